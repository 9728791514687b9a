package rulesql

import (
	"fmt"
	"testing"

	"github.com/expr-lang/expr"

	"github.com/iotpipe/iotpipe/rulesql/compile"
	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/schemas/payload"
)

const typicalRule = "SELECT temperature, topic(3) AS id FROM 'farm/+/sensors/+' WHERE temperature > 30 AND humidity < 50"

func typicalInput(b *testing.B) *Input {
	v, err := payload.Decode([]byte(`{"temperature": 31.5, "humidity": 40, "battery": 87, "fw": "1.2.3"}`))
	if err != nil {
		b.Fatal(err)
	}
	return &Input{Topic: "farm/f1/sensors/s42", Payload: v, ClientID: "s42"}
}

// handWhere is the hand-written Go equivalent of the typical rule's WHERE
// on the same decoded payload, honouring Int and Decimal values.
func handWhere(p any) bool {
	m, ok := p.(map[string]any)
	if !ok {
		return false
	}
	num := func(v any) (float64, bool) {
		switch x := v.(type) {
		case float64:
			return x, true
		case int64:
			return float64(x), true
		}
		return 0, false
	}
	t, ok1 := num(m["temperature"])
	h, ok2 := num(m["humidity"])
	return ok1 && ok2 && t > 30 && h < 50
}

// handRule is the hand-written equivalent of the whole typical rule.
func handRule(in *Input) (any, bool) {
	if !handWhere(in.Payload) {
		return nil, false
	}
	out := make(map[string]any, 2)
	if v, ok := in.Payload.(map[string]any)["temperature"]; ok {
		out["temperature"] = v
	}
	level := in.Topic
	for range 2 {
		for i := 0; i < len(level); i++ {
			if level[i] == '/' {
				level = level[i+1:]
				break
			}
		}
	}
	for i := 0; i < len(level); i++ {
		if level[i] == '/' {
			level = level[:i]
			break
		}
	}
	out["id"] = level
	return out, true
}

// BenchmarkWhere is the typical rule's compiled WHERE alone.
func BenchmarkWhere(b *testing.B) {
	rules, err := Compile(typicalRule)
	if err != nil {
		b.Fatal(err)
	}
	where := rules[0].query.WherePred
	c := &env.Ctx{In: typicalInput(b)}
	c.Doc = c.In.Payload
	b.ReportAllocs()
	for b.Loop() {
		if where(c) != compile.True {
			b.Fatal("did not fire")
		}
	}
}

// BenchmarkWhereHandWritten is the same WHERE written in Go.
func BenchmarkWhereHandWritten(b *testing.B) {
	in := typicalInput(b)
	b.ReportAllocs()
	for b.Loop() {
		if !handWhere(in.Payload) {
			b.Fatal("did not fire")
		}
	}
}

// BenchmarkRuleEval is the whole typical rule through Rule.Eval.
func BenchmarkRuleEval(b *testing.B) {
	rules, err := Compile(typicalRule)
	if err != nil {
		b.Fatal(err)
	}
	in := typicalInput(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, fired, _ := rules[0].Eval(in, nil); !fired {
			b.Fatal("did not fire")
		}
	}
}

// BenchmarkRuleHandWritten is the whole typical rule written in Go.
func BenchmarkRuleHandWritten(b *testing.B) {
	in := typicalInput(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, fired := handRule(in); !fired {
			b.Fatal("did not fire")
		}
	}
}

func routerWith(b *testing.B, n int) *Set {
	rules := make([]*Rule, 0, n)
	for i := range n {
		// farm/<i>/sensors/+ and a few wildcard-heavy filters.
		filter := fmt.Sprintf("farm/f%d/sensors/+", i)
		switch i % 50 {
		case 1:
			filter = fmt.Sprintf("farm/+/sensors/s%d", i)
		case 2:
			filter = fmt.Sprintf("fleet/%d/#", i)
		}
		rs, err := Compile(fmt.Sprintf("CREATE RULE r%d AS SELECT temperature FROM '%s' WHERE temperature > 30", i, filter))
		if err != nil {
			b.Fatal(err)
		}
		rules = append(rules, rs...)
	}
	s, err := NewSet(rules)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func benchRoute(b *testing.B, n int) {
	s := routerWith(b, n)
	var dst []*Rule
	b.ReportAllocs()
	for b.Loop() {
		dst = s.Router.AppendMatch(dst[:0], "farm/f0/sensors/s42")
		if len(dst) != 1 {
			b.Fatalf("matched %d rules", len(dst))
		}
	}
}

// BenchmarkRoute1 routes a topic among 1 rule; BenchmarkRoute10000 among
// 10,000: the trie makes them cost about the same.
func BenchmarkRoute1(b *testing.B)     { benchRoute(b, 1) }
func BenchmarkRoute10000(b *testing.B) { benchRoute(b, 10000) }

// BenchmarkPewmaRule is a pewma() rule with its state in a map store.
func BenchmarkPewmaRule(b *testing.B) {
	rules, err := Compile("SELECT pewma(temperature) AS a FROM 'farm/#' WHERE a.anomaly")
	if err != nil {
		b.Fatal(err)
	}
	st := memState{}
	in := typicalInput(b)
	in.Thing = "s42"
	b.ReportAllocs()
	for b.Loop() {
		rules[0].Eval(in, st)
	}
}

type memState map[string][]byte

func (m memState) Get(k []byte) ([]byte, bool, error) { v, ok := m[string(k)]; return v, ok, nil }
func (m memState) Set(k, v []byte) error              { m[string(k)] = append([]byte(nil), v...); return nil }

// BenchmarkWhereExprLang is the same WHERE as an expr-lang program over
// the decoded payload, for comparison with the closure tree (expr-lang has
// no Undefined: a missing attribute is nil and makes > an error, so AWS
// semantics would need wrapper functions on every operator).
func BenchmarkWhereExprLang(b *testing.B) {
	prog, err := expr.Compile("temperature > 30 && humidity < 50", expr.AsBool())
	if err != nil {
		b.Fatal(err)
	}
	in := typicalInput(b)
	b.ReportAllocs()
	for b.Loop() {
		out, err := expr.Run(prog, in.Payload)
		if err != nil || out != true {
			b.Fatal(out, err)
		}
	}
}
