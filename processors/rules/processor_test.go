package rules

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/schemas"
)

const greenhouse = `
CREATE RULE shade AS
SELECT * FROM 'greenhouse/+/lux' WHERE lux > 35000
THEN command(thing => '${topic(2)}', topic => 'greenhouse/${topic(2)}/shade', payload => '{"shade": "close", "lux": ${lux}}'),
     webhook(url => 'http://hooks.local/${clientid()}');

CREATE RULE temps AS
SELECT temp, topic(2) AS house FROM 'greenhouse/+/temp' WHERE temp > 30
THEN kafka(topic => 'alerts', key => '${clientid()}');
`

func TestRoutingAndActionRecords(t *testing.T) {
	g := newRig(t, greenhouse, Options{})
	tests := []struct {
		thing, topic, payload string
		want                  []schemas.Action
	}{
		{"gh-1", "greenhouse/gh-1/lux", `{"lux": 20000}`, nil},
		{"gh-1", "greenhouse/gh-1/lux", `{"lux": 40000}`, []schemas.Action{
			{Key: "0/1/shade/0", Rule: "shade", Type: "command", Thing: "gh-1",
				Params:  map[string]any{"thing": "gh-1", "topic": "greenhouse/gh-1/shade", "payload": `{"shade": "close", "lux": 40000}`},
				Payload: map[string]any{"lux": float64(40000)}},
			{Key: "0/1/shade/1", Rule: "shade", Type: "webhook", Thing: "gh-1",
				Params:  map[string]any{"url": "http://hooks.local/gh-1"},
				Payload: map[string]any{"lux": float64(40000)}},
		}},
		{"gh-2", "greenhouse/gh-2/temp", `{"temp": 31.5}`, []schemas.Action{
			{Key: "0/2/temps/0", Rule: "temps", Type: "kafka", Thing: "gh-2",
				Params:  map[string]any{"topic": "alerts", "key": "gh-2"},
				Payload: map[string]any{"temp": 31.5, "house": "gh-2"}},
		}},
		{"gh-2", "greenhouse/gh-2/temp", `{"temp": 20}`, nil},
		{"gh-2", "greenhouse/gh-2/other", `{"lux": 90000, "temp": 90}`, nil}, // no rule matches
		{"gh-3", "greenhouse/gh-3/lux", `not json`, nil},                     // lux is Undefined: WHERE false
	}
	for i, tt := range tests {
		recs := g.publish(tt.thing, tt.topic, tt.payload)
		got := actions(t, recs)
		for j := range got {
			if got[j].FiredAt != g.h.Now.UnixMilli() {
				t.Errorf("event %d: fired_at %d, want the receive time %d", i, got[j].FiredAt, g.h.Now.UnixMilli())
			}
			got[j].FiredAt = 0
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("event %d (%s %s): actions\n got %+v\nwant %+v", i, tt.topic, tt.payload, got, tt.want)
		}
		if len(recs) != len(tt.want) {
			t.Errorf("event %d: %d records emitted, want %d", i, len(recs), len(tt.want))
		}
	}
	st := g.r.p.Status()
	byName := map[string]RuleStatus{}
	for _, r := range st.Rules {
		byName[r.Name] = r
	}
	if s := byName["shade"]; s.Matched != 3 || s.Fired != 1 || len(s.LastOutputs) != 1 {
		t.Errorf("shade status = %+v", s)
	}
	if s := byName["temps"]; s.Matched != 2 || s.Fired != 1 || s.Kind != "select" {
		t.Errorf("temps status = %+v", s)
	}
}

// A rule put in another set after its own was loaded (which renumbers
// it) is still counted, and fires, as the loaded set's rule.
func TestRulesInTwoSets(t *testing.T) {
	g := newRig(t, greenhouse, Options{})
	if _, err := rulesql.NewSet([]*rulesql.Rule{g.rs.Rule("temps"), g.rs.Rule("shade")}); err != nil {
		t.Fatal(err)
	}
	if got := g.rs.Rule("shade").Index(); got != 1 {
		t.Fatalf("shade's index in the second set: %d, want 1", got)
	}
	if recs := g.publish("gh-1", "greenhouse/gh-1/lux", `{"lux": 40000}`); len(actions(t, recs)) != 2 {
		t.Errorf("shade gave %d records, want its 2 actions", len(recs))
	}
	byName := map[string]RuleStatus{}
	for _, r := range g.r.p.Status().Rules {
		byName[r.Name] = r
	}
	if s, o := byName["shade"], byName["temps"]; s.Matched != 1 || s.Fired != 1 || o.Matched != 0 {
		t.Errorf("shade matched %d, fired %d; temps matched %d: want 1, 1, 0", s.Matched, s.Fired, o.Matched)
	}
}

func TestLifecycleEventsAreRouted(t *testing.T) {
	g := newRig(t, `CREATE RULE offline AS SELECT clientId, eventType FROM '$aws/events/presence/disconnected/+'
THEN webhook(url => 'http://h/offline/${clientId}')`, Options{})
	recs, err := g.h.Publish(t.Context(), "dev-1", schemas.Envelope{Type: schemas.EventDisconnected,
		Topic: "$aws/events/presence/disconnected/dev-1", ClientID: "dev-1"}, []byte(`{"clientId":"dev-1","eventType":"disconnected"}`))
	if err != nil {
		t.Fatal(err)
	}
	acts := actions(t, recs)
	if len(acts) != 1 || acts[0].Params["url"] != "http://h/offline/dev-1" {
		t.Fatalf("actions = %+v", acts)
	}
	// A subscribe event's topic is a filter: rules do not see it.
	recs, err = g.h.Publish(t.Context(), "dev-1", schemas.Envelope{Type: schemas.EventSubscribed,
		Topic: "$aws/events/presence/disconnected/dev-1", ClientID: "dev-1"}, []byte(`{"clientId":"dev-1"}`))
	if err != nil || len(recs) != 0 {
		t.Errorf("subscribe event: %v records, err %v", len(recs), err)
	}
}

// TestIdempotencyKeysAreStable replays the same events into a fresh
// state: every action record (key and value) is the same.
func TestIdempotencyKeysAreStable(t *testing.T) {
	events := [][3]string{
		{"gh-1", "greenhouse/gh-1/lux", `{"lux": 50000}`},
		{"gh-2", "greenhouse/gh-2/temp", `{"temp": 35}`},
		{"gh-1", "greenhouse/gh-1/lux", `{"lux": 60000}`},
	}
	run := func() []string {
		g := newRig(t, greenhouse, Options{})
		var out []string
		for _, e := range events {
			for _, r := range g.publish(e[0], e[1], e[2]) {
				out = append(out, string(r.Key)+" "+string(r.Value)+" "+header(r, schemas.HeaderSource))
			}
		}
		return out
	}
	a, b := run(), run()
	if !reflect.DeepEqual(a, b) || len(a) != 5 {
		t.Fatalf("runs differ or wrong count (%d):\n%v\n%v", len(a), a, b)
	}
	wantKeys := []string{"0/0/shade/0", "0/0/shade/1", "0/1/temps/0", "0/2/shade/0", "0/2/shade/1"}
	for i, k := range wantKeys {
		if !strings.HasPrefix(a[i], k+" ") {
			t.Errorf("record %d = %s, want key %s", i, a[i], k)
		}
	}
}

func TestErrorActionAndDLQ(t *testing.T) {
	src := `
CREATE RULE with_error_action AS
SELECT get_thing_shadow(clientid()).state AS s FROM 'dev/+/data'
THEN webhook(url => 'http://h/ok')
ERROR ACTION kafka(topic => 'rule-errors', key => '${clientid()}');

CREATE RULE without_error_action AS
SELECT get_thing_shadow(clientid()).state AS s FROM 'dev/+/data'
THEN webhook(url => 'http://h/ok');

CREATE RULE healthy AS
SELECT v FROM 'dev/+/data' THEN kafka(topic => 'fine');
`
	g := newRig(t, src, Options{Shadow: failingShadow{}})
	recs := g.publish("dev-1", "dev/dev-1/data", `{"v": 7}`)
	acts := actions(t, recs)
	if len(acts) != 2 {
		t.Fatalf("actions = %+v", acts)
	}
	ea := acts[0]
	if !ea.ErrorAction || ea.Type != "kafka" || ea.Key != "0/0/with_error_action/error" ||
		!strings.Contains(ea.Error, "shadow view unavailable") || ea.Params["key"] != "dev-1" {
		t.Errorf("error action = %+v", ea)
	}
	if p, _ := ea.Payload.(map[string]any); p["ruleName"] != "with_error_action" || p["topic"] != "dev/dev-1/data" {
		t.Errorf("error action payload = %+v", ea.Payload)
	}
	if acts[1].Rule != "healthy" || acts[1].ErrorAction {
		t.Errorf("healthy rule = %+v", acts[1])
	}
	dlq := only(recs, topics.DLQ)
	if len(dlq) != 1 {
		t.Fatalf("dlq records = %d", len(dlq))
	}
	d := dlq[0]
	if header(d, "dlq.rule") != "without_error_action" || !strings.Contains(header(d, "dlq.reason"), "shadow view unavailable") ||
		header(d, "dlq.source") != "iotpipe.events/0/0" || string(d.Value) != `{"v": 7}` || header(d, schemas.HeaderTopic) != "dev/dev-1/data" {
		t.Errorf("dlq record: key %s value %s headers %v", d.Key, d.Value, d.Headers)
	}
	byName := map[string]RuleStatus{}
	for _, r := range g.r.p.Status().Rules {
		byName[r.Name] = r
	}
	if s := byName["without_error_action"]; s.Errors != 1 || s.Fired != 0 || !strings.Contains(s.LastError, "shadow") {
		t.Errorf("status = %+v", s)
	}
}

func TestStatusHandler(t *testing.T) {
	g := newRig(t, greenhouse, Options{})
	g.publish("gh-1", "greenhouse/gh-1/lux", `{"lux": 50000}`)
	rec := httptestRecorder(t, g.r.p)
	var st Status
	if err := json.Unmarshal(rec, &st); err != nil {
		t.Fatalf("%v: %s", err, rec)
	}
	if len(st.Rules) != 2 || st.Rules[0].Name != "shade" || st.Rules[0].Fired != 1 ||
		len(st.Rules[0].LastOutputs) != 1 || !reflect.DeepEqual(st.Rules[0].Actions, []string{"command", "webhook"}) {
		t.Errorf("status = %s", rec)
	}
	out, _ := st.Rules[0].LastOutputs[0].Output.(map[string]any)
	if out["lux"] != float64(50000) {
		t.Errorf("last output = %v", st.Rules[0].LastOutputs[0])
	}
}

// TestAppendActionMatchesJSON checks the hand-written encoding against
// encoding/json on the same schemas.Action.
func TestAppendActionMatchesJSON(t *testing.T) {
	tests := []schemas.Action{
		{Key: "0/1/r/0", Rule: "r", Type: "webhook", Params: map[string]any{"url": "http://h/\"q\"<>&", "n": int64(3), "h": map[string]any{"X": "y"}},
			Payload: map[string]any{"a": []any{1.5, "x\u2028"}}, Thing: "t", FiredAt: 1700000000000},
		{Key: "0/2/r/error", Rule: "r", Type: "kafka", Payload: nil, ErrorAction: true, Error: "boom\n"},
		{Key: "k", Rule: "", Type: "", Params: map[string]any{}, Payload: "s", FiredAt: -1},
	}
	for _, a := range tests {
		got, err := appendAction(nil, &a)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(a)
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		json.Unmarshal(want, &w)
		if !reflect.DeepEqual(g, w) {
			t.Errorf("appendAction = %s\n json.Marshal = %s", got, want)
		}
	}
}
