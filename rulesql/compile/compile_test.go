package compile

import (
	"testing"

	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/parser"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

// TestPredMatchesExpr checks that the predicate form of a WHERE agrees
// with the value form on every payload: True exactly when the value is
// true, Unknown exactly when it is not a Boolean.
func TestPredMatchesExpr(t *testing.T) {
	conds := []string{
		"t > 30", "t >= 30", "t < 30.5", "t <= -1", "t > 30 AND h < 50", "t > 30 OR h < 50",
		"NOT (t > 30)", "NOT t > 30 AND h < 50", "s", "t > 30 AND s", "n > 1", "t > 9007199254740993",
		"t = 31", "(t > 1) OR missing > 2", "missing > 2 AND t > 1000",
	}
	payloads := []any{
		map[string]any{"t": 31.5, "h": int64(40), "s": "true", "n": nil},
		map[string]any{"t": int64(30), "h": 60.0, "s": "FALSE"},
		map[string]any{"t": "31", "h": "x", "s": true},
		map[string]any{"t": true},
		map[string]any{},
		[]any{int64(1)},
		value.Undefined,
		nil,
	}
	for _, src := range conds {
		e, err := parser.ParseExpr(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		k := &compiler{aliases: map[string]int{}}
		f, _, err := k.expr(e)
		if err != nil {
			t.Fatal(err)
		}
		p, err := k.pred(e)
		if err != nil {
			t.Fatal(err)
		}
		for _, pl := range payloads {
			c := &env.Ctx{In: &env.Input{}, Doc: pl}
			v, tri := f(c), p(c)
			want := Unknown
			if b, ok := value.ToBool(v); ok {
				want = boolTri(b)
			}
			if tri != want {
				t.Errorf("%s on %v: pred %v, value %#v", src, pl, tri, v)
			}
		}
	}
}

// argKey tells apart any two arguments that may differ on some event,
// ignores positions, and has no key for arguments that call functions.
func TestArgKey(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"temp", "  temp", true},
		{"a.b[0] * 1.8 + 32", "a.b[0]*1.8+32", true},
		{"cast(t AS Int)", "cast(t   AS Int)", true},
		{"temp", "hum", false},
		{"temp", "Temp", false},
		{"t + 1", "t + 1.0", false},
		{"t + 1", "t - 1", false},
		{"t + 1", "1 + t", false},
		{"a.b", "a['b']", false},
		{"-t", "t", false},
		{"t * 2 + 1", "t * (2 + 1)", false},
		{"'1'", "1", false},
		{"cast(t AS Int)", "cast(t AS Decimal)", false},
	}
	key := func(src string) string {
		e, err := parser.ParseExpr(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		k, ok := argKey(e)
		if !ok || k == "" {
			t.Fatalf("%s: no key", src)
		}
		return k
	}
	for _, tt := range tests {
		if got := key(tt.a) == key(tt.b); got != tt.same {
			t.Errorf("%q and %q: same key %v, want %v (%s, %s)", tt.a, tt.b, got, tt.same, key(tt.a), key(tt.b))
		}
	}
	for _, src := range []string{"abs(t)", "CASE WHEN t > 1 THEN t END", "[t]", "t + rand()"} {
		e, err := parser.ParseExpr(src)
		if err != nil {
			t.Fatal(err)
		}
		if k, ok := argKey(e); ok {
			t.Errorf("%s: key %s", src, k)
		}
	}
}
