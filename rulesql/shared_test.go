package rulesql_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/iotpipe/iotpipe/internal/sharedtest"
	"github.com/iotpipe/iotpipe/rulesql/ruletest"
)

// jsonLines decodes each line; numbers become float64, so 5 and 5.0
// compare equal, and objects compare without regard to key order.
func jsonLines(t *testing.T, b []byte) []any {
	t.Helper()
	var out []any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var v any
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatalf("bad JSON line %q: %v", line, err)
		}
		out = append(out, v)
	}
	return out
}

// TestSharedRules runs ../shared/rules (the example rules) and
// ../shared/rules/aws-validation (outputs AWS IoT Core produced): each
// must check clean and print its expected.jsonl.
func TestSharedRules(t *testing.T) {
	root := filepath.Join(sharedtest.Path(t), "rules")
	cases := []struct{ name, rules, input, expected string }{
		{"examples", root, "examples.jsonl", "expected.jsonl"},
		{"aws-validation", filepath.Join(root, "aws-validation"), "input.jsonl", "expected.jsonl"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Only the directory's own files: examples must not pick up
			// the aws-validation subdirectory.
			files, err := filepath.Glob(filepath.Join(c.rules, "*.sql"))
			if err != nil || len(files) == 0 {
				t.Fatalf("no rules in %s: %v", c.rules, err)
			}
			set, err := ruletest.Load(files)
			if err != nil {
				t.Fatalf("check: %v", err)
			}
			in, err := os.Open(filepath.Join(c.rules, c.input))
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			var out bytes.Buffer
			if err := ruletest.Run(context.Background(), set, in, &out, ruletest.Options{}); err != nil {
				t.Fatalf("run: %v", err)
			}
			wantRaw, err := os.ReadFile(filepath.Join(c.rules, c.expected))
			if err != nil {
				t.Fatal(err)
			}
			got, want := jsonLines(t, out.Bytes()), jsonLines(t, wantRaw)
			if len(got) != len(want) {
				t.Fatalf("got %d outputs, want %d\n got:\n%s", len(got), len(want), out.Bytes())
			}
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Errorf("output %d:\n got: %v\nwant: %v", i+1, got[i], want[i])
				}
			}
		})
	}
}
