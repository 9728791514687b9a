package reliability

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Row is one line of the suite's table: a fault (or a bad input) and
// what the load saw through it.
type Row struct {
	// Fault is the fault injected or the bad input sent.
	Fault string
	// Load is the load it ran under.
	Load string
	// Acknowledged is how many publishes of the load were acknowledged.
	Acknowledged int
	// Lost is how many acknowledged publishes the log does not hold.
	Lost int
	// Duplicated is how many publishes the log holds more than once.
	Duplicated int
	// Rows says the telemetry rows in ClickHouse against the publishes
	// in the log, e.g. "41,233 = 41,233" ("" when not checked).
	Rows string
	// Recovery is how long the pipeline took to recover from the fault
	// (0 when there was nothing to recover from).
	Recovery time.Duration
	// Notes says what else was seen: answers, repeats, refusals.
	Notes string
}

// Table is the suite's table of figures. Safe for concurrent use.
type Table struct {
	mu   sync.Mutex
	rows []Row
}

// Add appends rows.
func (t *Table) Add(rows ...Row) {
	t.mu.Lock()
	t.rows = append(t.rows, rows...)
	t.mu.Unlock()
}

// Rows returns the rows added so far.
func (t *Table) Rows() []Row {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Row(nil), t.rows...)
}

// Markdown renders the table.
func (t *Table) Markdown() string {
	var b strings.Builder
	b.WriteString("| fault or input | load | acknowledged | lost | duplicated | rows (ClickHouse = log) | time to recover | notes |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---|\n")
	for _, r := range t.Rows() {
		rows := r.Rows
		if rows == "" {
			rows = "–"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", cell(r.Fault), cell(r.Load), Thousands(r.Acknowledged),
			Thousands(r.Lost), Thousands(r.Duplicated), cell(rows), recovery(r.Recovery), cell(r.Notes))
	}
	return b.String()
}

// WriteFile writes the table to path (its directory created if needed)
// under a title, with the lines of about (the run's mode, seed,
// duration...) between them.
func (t *Table) WriteFile(path, title string, about ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", title)
	for _, line := range about {
		fmt.Fprintf(&b, "%s\n", line)
	}
	if len(about) > 0 {
		b.WriteString("\n")
	}
	b.WriteString(t.Markdown())
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// cell makes s safe inside a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func recovery(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < 100*time.Millisecond:
		return "< 0.1 s"
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// Thousands formats n with a comma between groups of three digits.
func Thousands(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		s = "-" + s
	}
	return s
}
