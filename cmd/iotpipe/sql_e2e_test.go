package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotpipe/iotpipe/sinks/clickhouse/embedded"
)

// `iotpipe sql` takes its flags before or after the query ("--" ends
// them); an unknown flag or a bad value is a usage error wherever it
// stands. Before, flags after the query were silently ignored (a table
// was printed for --format csv).
func TestSQLFlagsAfterTheQuery(t *testing.T) {
	in, ch := clickhouseInstance(t)
	in.start(ch...)
	creds, err := embedded.ReadCredentials(filepath.Join(in.dataDir, "clickhouse"))
	if err != nil {
		t.Fatal(err)
	}
	dsn := creds.DSN()
	for _, c := range []struct {
		name   string
		args   []string
		code   int
		stdout string // exact, when not ""
		json   bool   // stdout is a JSON array of one row
		stderr string // contained
	}{
		{name: "flags after the query", args: []string{"SELECT 1 AS x, 'a' AS y", "--format", "csv", "--clickhouse", dsn},
			stdout: "x,y\n1,a\n"},
		{name: "flags on both sides, query in words", args: []string{"--clickhouse", dsn, "SELECT", "2", "AS", "x", "--format", "json"},
			json: true},
		{name: "-- ends the flags", args: []string{"--clickhouse", dsn, "--format", "csv", "--", "SELECT", "3", "AS", "x"},
			stdout: "x\n3\n"},
		{name: "bad value after the query", args: []string{"SELECT 1", "--format", "xml", "--clickhouse", dsn},
			code: 2, stderr: `unknown --format "xml": want table, csv or json`},
		{name: "unknown flag after the query", args: []string{"SELECT 1", "--bogus"},
			code: 2, stderr: "flag provided but not defined: -bogus"},
		{name: "flag without its value", args: []string{"SELECT 1", "--format"},
			code: 2, stderr: "flag needs an argument: -format"},
		{name: "no query", args: []string{"--format", "csv"}, code: 2, stderr: "no query"},
		{name: "help", args: []string{"--help"}, stdout: sqlUsage},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := dispatch(t.Context(), append([]string{"sql"}, c.args...), &out, &errb)
			if code != c.code {
				t.Errorf("exit status %d, want %d (stderr %q)", code, c.code, errb.String())
			}
			if c.stdout != "" && out.String() != c.stdout {
				t.Errorf("stdout %q, want %q", out.String(), c.stdout)
			}
			if c.json {
				var rows []map[string]any
				if err := json.Unmarshal(out.Bytes(), &rows); err != nil || len(rows) != 1 || rows[0]["x"] != float64(2) {
					t.Errorf("stdout %q is not the JSON of one row x=2 (%v)", out.String(), err)
				}
			}
			if c.stderr != "" && !strings.Contains(errb.String(), c.stderr) {
				t.Errorf("stderr %q does not say %q", errb.String(), c.stderr)
			}
		})
	}
}
