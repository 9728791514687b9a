package rulesql_test

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/rulesql/ruletest"
)

var update = flag.Bool("update", false, "rewrite the expected.jsonl golden files")

// shadows is a fixed shadow view for get_thing_shadow().
type shadows map[string]any

func (s shadows) ThingShadow(thing, name string) (any, bool, error) {
	d, ok := s[thing]
	return d, ok, nil
}

// TestGolden runs every testdata/golden/<case>/ directory: its .sql
// files over input.jsonl must print expected.jsonl exactly (go test
// -run Golden -update rewrites them; review the diff).
func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/golden/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			set, err := ruletest.Load([]string{dir})
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			in, err := os.Open(filepath.Join(dir, "input.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			var out bytes.Buffer
			opts := ruletest.Options{
				Now:    func() time.Time { return time.UnixMilli(1763812800000) },
				Shadow: shadows{"lamp-1": map[string]any{"state": map[string]any{"reported": map[string]any{"on": true}}}},
			}
			if err := ruletest.Run(context.Background(), set, in, &out, opts); err != nil {
				t.Fatalf("run: %v", err)
			}
			golden := filepath.Join(dir, "expected.jsonl")
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(out.Bytes(), want) {
				t.Errorf("output differs from %s\n got:\n%s\nwant:\n%s", golden, out.Bytes(), want)
			}
		})
	}
}
