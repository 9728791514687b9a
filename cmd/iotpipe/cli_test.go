package main

import (
	"bytes"
	"strings"
	"testing"
)

// No subcommand ignores an argument it does not take: stray positional
// arguments and unknown flags, wherever they stand, are usage errors
// (exit 2) that name the argument. (`run`, `ingest`, `process` and
// `sink` are covered by TestStartupErrorsPrintedOnce, `sql` by
// TestSQLFlagsAfterTheQuery.)
func TestSubcommandsRefuseStrayArguments(t *testing.T) {
	for _, c := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"version", "--json"}, `unexpected argument "--json"`},
		{[]string{"version", "extra"}, `unexpected argument "extra"`},
		{[]string{"process", "--kafka", "127.0.0.1:1", "extra"}, `unexpected argument "extra": process takes flags only`},
		{[]string{"sink", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"ingest", "--log-level", "verbose"}, `--log-level (log_level) "verbose": want debug, info, warn or error`},
		{[]string{"rules", "check", "testdata", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"bench", "mqtt", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"bench", "shadows", "extra"}, ""},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := dispatch(t.Context(), c.args, &out, &errb); code != 2 {
				t.Errorf("exit status %d, want 2; stderr %q", code, errb.String())
			}
			if !strings.Contains(errb.String(), c.stderr) {
				t.Errorf("stderr %q does not say %q", errb.String(), c.stderr)
			}
		})
	}
}
