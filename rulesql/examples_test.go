package rulesql

import (
	"strings"
	"testing"

	"github.com/iotpipe/iotpipe/rulesql/funcs"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

// TestCatalogExamples evaluates every documented example of the form
// "call = literal" (those with '...' or ≈ are illustrations, not checked)
// so the function docs cannot drift from the implementation.
func TestCatalogExamples(t *testing.T) {
	checked := 0
	for _, f := range funcs.All() {
		for _, ex := range strings.Split(f.Example, "; ") {
			lhs, rhs, ok := strings.Cut(ex, " = ")
			if !ok || strings.Contains(ex, "...") || strings.Contains(ex, "≈") || strings.Contains(lhs, " on ") || f.Volatile {
				continue
			}
			rules, err := Compile("SELECT VALUE " + lhs + " FROM 't'")
			if err != nil {
				t.Errorf("%s: example %q: %v", f.Name, lhs, err)
				continue
			}
			got, _, _ := rules[0].Eval(&Input{Topic: "t", Payload: map[string]any{}}, nil)
			wantRules, err := Compile("SELECT VALUE " + rhs + " FROM 't'")
			if err != nil {
				t.Errorf("%s: example result %q: %v", f.Name, rhs, err)
				continue
			}
			wantV, _, _ := wantRules[0].Eval(&Input{Topic: "t", Payload: map[string]any{}}, nil)
			if value.IsUndefined(got) || !value.DeepEqual(got, wantV) {
				t.Errorf("%s: %s = %#v, documented %s", f.Name, lhs, got, rhs)
			}
			checked++
		}
	}
	if checked < 50 {
		t.Errorf("only %d examples checked", checked)
	}
}
