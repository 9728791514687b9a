// Package clickhouse holds iotpipe's ClickHouse DDL: versioned
// migrations (the .sql files in migrations/, embedded), the tables they
// create and the minimum server version they need. Applying them is the
// sink's job (sinks/clickhouse); this package only renders them.
package clickhouse

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"text/template"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// MinServerVersion is the oldest ClickHouse server the DDL and the sink
// support (Map, DateTime64 codecs, insert_deduplication_token on
// non-replicated MergeTree).
const MinServerVersion = "23.8"

// MigrationsTable is the table that records applied migration versions.
const MigrationsTable = "iotpipe_schema_migrations"

// Options shapes the rendered DDL.
type Options struct {
	// TTLDays drops rows older than this many days; 0 keeps them forever.
	TTLDays int
	// DedupWindow is non_replicated_deduplication_window: how many recent
	// insert blocks each table remembers to drop a repeated insert.
	// Default 10000.
	DedupWindow int
}

// Table is one table the DDL creates.
type Table struct {
	// Name is the table name.
	Name string
	// TimeColumn is the DateTime64 column the table is partitioned,
	// ordered and expired by.
	TimeColumn string
}

// Tables are the tables the migrations create that are partitioned by
// day of TimeColumn and expire with the TTL, in creation order. Not
// among them: shadows_latest (each shadow's latest change, kept for as
// long as the shadow lives) and the views over it.
func Tables() []Table {
	return []Table{
		{"telemetry", "received_at"},
		{"presence", "received_at"},
		{"shadows", "updated_at"},
		{"anomalies", "detected_at"},
		{"aggregates", "window_start"},
		{"rule_outputs", "fired_at"},
	}
}

// Migration is one versioned step of the schema.
type Migration struct {
	// Version orders migrations; it is the file name's numeric prefix.
	Version int
	// Name is the file name without the prefix and extension.
	Name string
	// Statements are the rendered SQL statements, in order. Re-applying
	// a migration is harmless: statements create IF NOT EXISTS, and a
	// backfill writes into a table that folds repeated rows.
	Statements []string
}

// TTLClause returns the TTL clause for a table expired by column, or ""
// when days is 0.
func TTLClause(column string, days int) string {
	if days <= 0 {
		return ""
	}
	return fmt.Sprintf("TTL toDateTime(%s) + INTERVAL %d DAY", column, days)
}

// Migrations renders every migration with opts, ordered by version.
func Migrations(opts Options) ([]Migration, error) {
	if opts.DedupWindow == 0 {
		opts.DedupWindow = 10000
	}
	if opts.TTLDays < 0 || opts.DedupWindow < 0 {
		return nil, fmt.Errorf("clickhouse ddl: negative TTLDays or DedupWindow")
	}
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	funcs := template.FuncMap{"ttl": func(col string) string { return TTLClause(col, opts.TTLDays) }}
	var out []Migration
	for _, name := range names {
		base := strings.TrimSuffix(path.Base(name), ".sql")
		num, rest, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("clickhouse ddl: migration %s: name must be NNNN_name.sql", name)
		}
		src, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		tmpl, err := template.New(name).Funcs(funcs).Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("clickhouse ddl: migration %s: %w", name, err)
		}
		var buf bytes.Buffer
		if err := tmpl.Execute(&buf, opts); err != nil {
			return nil, fmt.Errorf("clickhouse ddl: migration %s: %w", name, err)
		}
		if len(out) > 0 && out[len(out)-1].Version >= v {
			return nil, fmt.Errorf("clickhouse ddl: migration %s: duplicate version %d", name, v)
		}
		out = append(out, Migration{Version: v, Name: rest, Statements: SplitStatements(buf.String())})
	}
	return out, nil
}

// SplitStatements splits a script into statements at semicolons that end
// a line, dropping "--" comment lines and empty statements.
func SplitStatements(script string) []string {
	var stmts []string
	var cur strings.Builder
	for line := range strings.SplitSeq(script, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(t, ";") {
			s := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")
			if s != "" {
				stmts = append(stmts, s)
			}
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		stmts = append(stmts, s)
	}
	return stmts
}

// CheckServerVersion returns an error that names the minimum when version
// (as SELECT version() reports it, e.g. "26.7.2.1") is older than
// MinServerVersion or unparsable.
func CheckServerVersion(version string) error {
	have, err := parseVersion(version)
	if err != nil {
		return fmt.Errorf("clickhouse server version %q: %w", version, err)
	}
	want, _ := parseVersion(MinServerVersion)
	for i := range want {
		if have[i] != want[i] {
			if have[i] < want[i] {
				return fmt.Errorf("clickhouse server %s is too old: iotpipe needs %s or newer; upgrade the server or use the embedded one (omit --clickhouse)", version, MinServerVersion)
			}
			return nil
		}
	}
	return nil
}

func parseVersion(v string) ([2]int, error) {
	var out [2]int
	parts := strings.SplitN(strings.TrimSpace(v), ".", 3)
	if len(parts) < 2 {
		return out, fmt.Errorf("want major.minor")
	}
	for i := range out {
		n, err := strconv.Atoi(parts[i])
		if err != nil {
			return out, fmt.Errorf("want major.minor: %w", err)
		}
		out[i] = n
	}
	return out, nil
}
