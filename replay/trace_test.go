package replay

import (
	"strings"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"
)

// trace returns the text trace of sel.
func (h *history) trace(rules string, sel Selection) (string, []*EventTrace) {
	h.t.Helper()
	var text []byte
	var trs []*EventTrace
	tr, err := NewTracer(compileRules(h.t, rules), Options{Partitions: h.l.Partitions()}, func(et *EventTrace) error {
		text = AppendTraceText(text, et)
		trs = append(trs, et)
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.each(sel, tr.Add, tr.Close)
	return string(text), trs
}

// TestTrace answers "why didn't my rule fire?" for each event of a
// thing: the topic match, the WHERE value with its Undefined attributes
// named, the output, a FOR rule's condition, and what a tick fired.
func TestTrace(t *testing.T) {
	h := newHistory(t, 2)
	h.produce(
		ev{thing: "s1", topic: "farm/s1/temp", payload: `{"temp":35}`},
		ev{thing: "s1", topic: "farm/s1/temp", payload: `{"temperature":35}`, at: time.Second},
		ev{thing: "s1", topic: "farm/s1/hum", payload: `{"hum":3}`, at: 2 * time.Second},
		ev{thing: "s1", topic: "door/s1/state", payload: `{"open":true}`, at: 3 * time.Second},
		ev{thing: "s2", topic: "farm/s2/temp", payload: `{"temp":35}`, at: 4 * time.Second},
		ev{thing: "s1", topic: "farm/s1/temp", payload: `{"temp":10,"hum":70}`, at: 16 * time.Second},
	)
	const rules = `CREATE RULE hot AS SELECT temp FROM 'farm/+/temp' WHERE temp > 30;
CREATE RULE muggy AS SELECT temp FROM 'farm/+/temp' WHERE temp > 25 AND hum > 60;
CREATE RULE door AS SELECT open FROM 'door/+/state' WHERE open = true FOR 10 SECONDS`
	text, trs := h.trace(rules, Selection{Thing: "s1"})
	want := []string{
		"  publish      s1  farm/s1/temp  qos=1  {\"temp\":35}",
		"  hot    WHERE true; fired",
		"      -> {\"rule\":\"hot\",\"output\":{\"temp\":35}}",
		"  muggy  WHERE Undefined (Undefined: hum); not fired",
		"  door   topic does not match FROM 'door/+/state'",
		"  hot    WHERE Undefined (Undefined: temp); not fired",
		"  muggy  WHERE Undefined (Undefined: temp, hum); not fired",
		"  hot    topic does not match FROM 'farm/+/temp'",
		"  door   WHERE true; FOR 10s: the condition holds (the rule fires once it has held that long)",
		"tick 2026-03-01T12:00:13.000Z: {\"rule\":\"door\",\"output\":{\"open\":true}}",
		"  muggy  WHERE false; not fired",
	}
	for _, w := range want {
		if !strings.Contains(text, w+"\n") {
			t.Errorf("trace has no line %q:\n%s", w, text)
		}
	}
	if len(trs) != 5 || strings.Contains(text, "s2") {
		t.Errorf("%d events traced (want s1's 5):\n%s", len(trs), text)
	}
	b, err := AppendTraceJSON(nil, trs[0])
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		Event struct{ Topic string }
		Rules []RuleTrace
	}
	if err := json.Unmarshal(b, &j); err != nil || j.Event.Topic != "farm/s1/temp" || len(j.Rules) != 3 || j.Rules[1].Undefined[0] != "hum" {
		t.Errorf("JSON trace %s: %+v %v", b, j, err)
	}
}

// TestTraceAgreesWithReplay: a trace fires exactly what replay fires.
func TestTraceAgreesWithReplay(t *testing.T) {
	h := newHistory(t, 4)
	h.produce(scenario()...)
	set := compileRules(t, scenarioRules)
	want, _ := h.replayLines(set, Selection{Thing: "s2"})
	_, trs := h.trace(scenarioRules, Selection{Thing: "s2"})
	var got []string
	for _, tr := range trs {
		for _, o := range tr.Ticks {
			got = append(got, string(o.Line))
		}
		for _, r := range tr.Rules {
			for _, o := range r.Outputs {
				got = append(got, string(o))
			}
			if r.Matched && r.Rule == "spike" && !r.Holds && len(r.Outputs) > 0 {
				t.Errorf("spike fired where its WHERE did not hold: %+v", r)
			}
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("trace outputs:\n%s\nreplay:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
