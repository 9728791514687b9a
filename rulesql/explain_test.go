package rulesql

import (
	"reflect"
	"testing"
)

func TestExplain(t *testing.T) {
	door := map[string]any{"state": map[string]any{"reported": map[string]any{"DoorOpened": true}}}
	tests := []struct {
		name, src string
		payload   any
		where     any
		undefined []string
		fired     bool
		output    any
	}{
		{"no WHERE", "SELECT a FROM 't'", map[string]any{"a": int64(1)}, true, nil, true, map[string]any{"a": int64(1)}},
		{"true", "SELECT a FROM 't' WHERE a > 0", map[string]any{"a": int64(1)}, true, nil, true, map[string]any{"a": int64(1)}},
		{"false", "SELECT a FROM 't' WHERE a > 5", map[string]any{"a": int64(1)}, false, nil, false, Undefined},
		{"undefined named", "SELECT a FROM 't' WHERE temperature > 30 AND humidity < 50",
			map[string]any{"temperature": int64(40)}, Undefined, []string{"humidity"}, false, Undefined},
		{"false AND Undefined is false, the missing attribute still named", "SELECT a FROM 't' WHERE a > 5 AND b = 1",
			map[string]any{"a": int64(1)}, false, []string{"b"}, false, Undefined},
		{"nested path", "SELECT * FROM 'fridge/+' WHERE state.reported.DoorOpened = true AND state.desired.x = 1",
			door, Undefined, []string{"state.desired.x"}, false, Undefined},
		{"inside a function call, once", "SELECT a FROM 't' WHERE lower(name) = 'x' OR upper(name) = 'X'",
			map[string]any{"a": int64(1)}, Undefined, []string{"name"}, false, Undefined},
		{"not a Boolean", "SELECT a FROM 't' WHERE a", map[string]any{"a": "yes"}, "yes", nil, false, Undefined},
		{"stateful alias", "SELECT pewma(t) AS p FROM 't' WHERE p.anomaly",
			map[string]any{"t": "not a number"}, Undefined, []string{"p.anomaly"}, false, Undefined},
		{"binary payload", "SELECT a FROM 't' WHERE a = 1", Undefined, Undefined, []string{"a"}, false, Undefined},
		{"window rule passes", "SELECT count(*) AS n FROM 't' WHERE a = 1 GROUP BY TUMBLE(1 MINUTE)",
			map[string]any{"a": int64(1)}, true, nil, true, Undefined},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustCompile(t, tt.src)[0]
			in := &Input{Topic: "t", Thing: "th", Payload: tt.payload}
			e := r.Explain(in, memState{})
			if e.Err != nil {
				t.Fatal(e.Err)
			}
			if !reflect.DeepEqual(e.Where, tt.where) || !reflect.DeepEqual(e.Undefined, tt.undefined) || e.Fired != tt.fired || !reflect.DeepEqual(e.Output, tt.output) {
				t.Errorf("Explain = where %#v, undefined %q, fired %v, output %#v\nwant where %#v, undefined %q, fired %v, output %#v",
					e.Where, e.Undefined, e.Fired, e.Output, tt.where, tt.undefined, tt.fired, tt.output)
			}
			out, fired, err := r.Eval(in, memState{})
			if fired != e.Fired || !reflect.DeepEqual(out, e.Output) || err != nil {
				t.Errorf("Eval = %#v, %v, %v; Explain must agree", out, fired, err)
			}
		})
	}
}

// TestExplainStateful checks that Explain advances stateful functions
// exactly as Eval does (once per event).
func TestExplainStateful(t *testing.T) {
	r := mustCompile(t, "SELECT pewma(t) AS p FROM 't'")[0]
	a, b := memState{}, memState{}
	for i := range 20 {
		in := &Input{Topic: "t", Thing: "th", Payload: map[string]any{"t": float64(i % 3)}}
		want, _, _ := r.Eval(in, a)
		if got := r.Explain(in, b).Output; !reflect.DeepEqual(got, want) {
			t.Fatalf("event %d: Explain output %v, Eval %v", i, got, want)
		}
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("states differ: %v vs %v", a, b)
	}
}
