package rulesql_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"github.com/iotpipe/iotpipe/internal/sharedtest"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/rulesql/ruletest"
)

// TestPewmaVectors runs every ../shared/pewma vector through a rule and
// "rules test" (state in the in-memory store): mean, std and probability
// must match to a relative 1e-9, anomaly exactly; NaN points are skipped.
func TestPewmaVectors(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(sharedtest.Path(t, "pewma"), "vectors_*.csv"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no pewma vectors: %v", err)
	}
	rules, err := rulesql.Compile("CREATE RULE p AS SELECT pewma(value) AS a FROM 'v/+'")
	if err != nil {
		t.Fatal(err)
	}
	set, err := rulesql.NewSet(rules)
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		if strings.HasSuffix(file, "_full.csv") {
			continue
		}
		t.Run(filepath.Base(file), func(t *testing.T) {
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			recs, err := csv.NewReader(f).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			var in bytes.Buffer
			for _, r := range recs[1:] {
				// JSON has no NaN: a non-numeric string gives pewma a NaN,
				// as a device sending "nan" would.
				v := r[1]
				if _, err := strconv.ParseFloat(v, 64); err != nil || v == "nan" {
					v = `"nan"`
				}
				fmt.Fprintf(&in, `{"topic": "v/1", "clientid": "dev", "payload": {"value": %s}}`+"\n", v)
			}
			var out bytes.Buffer
			if err := ruletest.Run(context.Background(), set, &in, &out, ruletest.Options{}); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != len(recs)-1 {
				t.Fatalf("%d outputs for %d points", len(lines), len(recs)-1)
			}
			for i, r := range recs[1:] {
				var o struct {
					Output struct {
						A *struct {
							Mean, Std, Probability float64
							Anomaly                bool
						} `json:"a"`
					} `json:"output"`
				}
				if err := json.Unmarshal([]byte(lines[i]), &o); err != nil {
					t.Fatal(err)
				}
				if r[4] == "" { // skipped point
					if o.Output.A != nil {
						t.Errorf("point %s: NaN gave %+v", r[0], *o.Output.A)
					}
					continue
				}
				a := o.Output.A
				if a == nil {
					t.Fatalf("point %s: no pewma result", r[0])
				}
				for j, got := range []float64{a.Mean, a.Std, a.Probability} {
					want, _ := strconv.ParseFloat(r[2+j], 64)
					if !close(got, want) {
						t.Errorf("point %s: %s = %v, want %v", r[0], []string{"mean", "std", "probability"}[j], got, want)
					}
				}
				if a.Anomaly != (r[5] == "1") {
					t.Errorf("point %s: anomaly = %v, want %s", r[0], a.Anomaly, r[5])
				}
			}
		})
	}
}

func close(a, b float64) bool {
	if a == b {
		return true
	}
	return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}
