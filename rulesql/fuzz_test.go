package rulesql_test

import (
	"testing"

	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/rulesql/ruletest"
	"github.com/iotpipe/iotpipe/rulesql/value"
	"github.com/iotpipe/iotpipe/schemas/payload"
)

// FuzzEval compiles arbitrary rule text and evaluates whatever compiles
// against an arbitrary payload: nothing may panic, and every output must
// encode as JSON.
func FuzzEval(f *testing.F) {
	seeds := []struct{ src, payload string }{
		{"SELECT temperature, topic(3) AS id FROM 'farm/+/sensors/+' WHERE temperature > 30 AND humidity < 50", `{"temperature": 31, "humidity": 20}`},
		{"SELECT *, abs(a) AS b, a.b[2].c AS d FROM '#'", `{"a": {"b": [0, 1, {"c": "x"}]}}`},
		{"SELECT VALUE (SELECT VALUE x * 2 FROM arr WHERE x > 1) FROM 't'", `{"arr": [{"x": 1}, {"x": "2"}, {"x": true}]}`},
		{"SELECT CASE a WHEN 1 THEN substring(s, -5, 99) ELSE lpad(s, 3) END AS c FROM 't'", `{"a": 1, "s": "héllo"}`},
		{"SELECT encode(*, 'base64') AS e, md2(*) AS h, concat(a, [1], 'x') AS c FROM 't'", `[1, 2]`},
		{"SELECT pewma(v).anomaly AS an, pewma(v, 0.9, 0.1, 2, 0.01) AS p FROM 't' WHERE p.t > 1", `{"v": 1e308}`},
		{"SELECT cast(a AS Int) AS i, cast(a AS Boolean) AS b, parse_time('yyyy', a) AS y, get(a, 0) AS g FROM 't'", `{"a": "9223372036854775807"}`},
		{"SELECT 1 / 0 AS x, -9223372036854775808 / -1 AS y, mod(1, 0) AS z, power(10, 400) AS p FROM 't'", `null`},
	}
	for _, s := range seeds {
		f.Add(s.src, []byte(s.payload))
	}
	f.Fuzz(func(t *testing.T, src string, raw []byte) {
		rules, err := rulesql.Compile(src)
		if err != nil {
			return
		}
		in := &rulesql.Input{Topic: "farm/f1/sensors/s1", ClientID: "c", Thing: "c", Raw: raw, Timestamp: 1}
		if v, err := payload.Decode(raw); err == nil {
			in.Payload = v
		} else {
			in.Payload = rulesql.Undefined
		}
		st := ruletest.MemState{}
		for _, r := range rules {
			out, _, _ := r.Eval(in, st)
			if _, err := value.MarshalJSON(out); err != nil && !rulesql.IsUndefined(out) {
				t.Fatalf("rule %q: output %#v does not encode: %v", src, out, err)
			}
			for _, a := range r.Actions {
				a.Render(in)
			}
			if r.Window != nil {
				aggs := make([]any, len(r.Aggregates))
				r.AggregateRow(in, aggs)
			}
		}
	})
}
