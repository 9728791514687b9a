package reliability

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/table.md")

// The table as the README shows it: testdata/table.md (go test
// ./benchmarks/reliability -run TestTableMarkdown -rewrite).
func TestTableMarkdown(t *testing.T) {
	var tb Table
	tb.Add(Row{Fault: "kill -9 ×3", Load: "10 devices × 20/s QoS 1", Acknowledged: 12345, Rows: "13,001 = 13,001",
		Recovery: 2345 * time.Millisecond, Notes: "webhook: 3 repeats | commands: 0"})
	tb.Add(Row{Fault: "topic with NUL", Load: "10 devices × 20/s QoS 1", Acknowledged: 180, Lost: 1, Duplicated: 2, Notes: "DISCONNECT 0x90\nnothing logged"})
	tb.Add(Row{Fault: "disk full", Acknowledged: 1200, Rows: "1,522 = 1,522", Recovery: 20 * time.Millisecond})
	got := tb.Markdown()
	golden := filepath.Join("testdata", "table.md")
	if *rewrite {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("table:\n%s\nwant (%s):\n%s", got, golden, want)
	}
	out := filepath.Join(t.TempDir(), "results", "reliability.md")
	if err := tb.WriteFile(out, "Reliability", "short form, seed 7"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := "# Reliability\n\nshort form, seed 7\n\n" + got; string(b) != want {
		t.Errorf("file:\n%s\nwant:\n%s", b, want)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234", 100000: "100,000"} {
		if got := Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
