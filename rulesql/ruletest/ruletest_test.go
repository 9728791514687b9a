package ruletest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

func TestEventInput(t *testing.T) {
	now := time.UnixMilli(42)
	ts := int64(7)
	tests := []struct {
		name    string
		ev      Event
		payload any
		raw     string
		thing   string
		stamp   int64
	}{
		{"object", Event{Topic: "t", Payload: []byte(`{"a": 1}`), ClientID: "c", Timestamp: &ts}, map[string]any{"a": int64(1)}, `{"a": 1}`, "c", 7},
		{"json in a string", Event{Topic: "t", Payload: []byte(`"[1, 2.5]"`), Thing: "th", ClientID: "c"}, []any{int64(1), 2.5}, "[1, 2.5]", "th", 42},
		{"binary string", Event{Topic: "t", Payload: []byte(`"\u0001abc"`)}, value.Undefined, "\x01abc", "", 42},
		{"no payload", Event{Topic: "t"}, value.Undefined, "", "", 42},
	}
	for _, tt := range tests {
		in, err := tt.ev.Input(now)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !reflect.DeepEqual(in.Payload, tt.payload) || string(in.Raw) != tt.raw || in.Thing != tt.thing || in.Timestamp != tt.stamp {
			t.Errorf("%s: input = %+v", tt.name, in)
		}
	}
}

func TestRunErrors(t *testing.T) {
	rules, err := rulesql.Compile("SELECT a FROM 't'")
	if err != nil {
		t.Fatal(err)
	}
	set, _ := rulesql.NewSet(rules)
	tests := []struct{ input, want string }{
		{"{\"topic\": \"t\", \"payload\": {}}\nnot json\n", "input line 2:"},
		{"{\"payload\": {}}\n", "input line 1: topic is required"},
		{"{\"topic\": \"t\", \"payload\": {\"a\": 1}}\n# comment\n\n{\"topic\": \"t\", \"payload\": {bad}}\n", "input line 4:"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := Run(context.Background(), set, strings.NewReader(tt.input), &out, Options{})
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Run(%q) error = %v, want prefix %q", tt.input, err, tt.want)
		}
	}
}

func TestMemState(t *testing.T) {
	m := MemState{}
	v := []byte("x")
	m.Set([]byte("k"), v)
	v[0] = 'y'
	got, ok, err := m.Get([]byte("k"))
	if err != nil || !ok || string(got) != "x" {
		t.Errorf("Get = %q %v %v (Set must copy)", got, ok, err)
	}
	if _, ok, _ := m.Get([]byte("none")); ok {
		t.Error("missing key found")
	}
}

// TestDurationAsTheProcessor runs FOR rules the way the rules processor
// does (processors/rules, timer.Timers): time advances with the events'
// timestamps in whole seconds (the runtime's tick), an episode fires at
// its deadline with the last event at which the condition held, even
// when no event of its thing comes after, and a condition first seen
// false after the deadline did hold for the duration.
func TestDurationAsTheProcessor(t *testing.T) {
	const rules = `CREATE RULE door AS SELECT topic(2) AS fridge, n FROM 'fridge/+'
WHERE open = true FOR 10 SECONDS RESOLVE THEN webhook(url => 'http://h/${topic(2)}/${n}')`
	ev := func(fridge string, ts int64, open bool, n int) string {
		return fmt.Sprintf(`{"topic":"fridge/%s","clientid":"%s","timestamp":%d,"payload":{"open":%t,"n":%d}}`, fridge, fridge, ts, open, n)
	}
	other := func(ts int64) string {
		return fmt.Sprintf(`{"topic":"other","clientid":"x","timestamp":%d,"payload":{}}`, ts)
	}
	fired := func(fridge string, n int) string {
		return fmt.Sprintf(`{"rule":"door","output":{"fridge":"%s","n":%d},"actions":[{"type":"webhook","params":{"url":"http://h/%s/%d"}}]}`, fridge, n, fridge, n)
	}
	resolved := func(fridge string, n, by int) string {
		return fmt.Sprintf(`{"rule":"door","output":{"fridge":"%s","n":%d},"actions":[{"type":"webhook","params":{"url":"http://h/%s/%d"}}],"resolved":true}`, fridge, n, fridge, by)
	}
	tests := []struct {
		name  string
		input []string
		want  []string
	}{
		{"stays open, no more events of its own: fires at the first tick past the deadline",
			[]string{ev("f1", 1000, true, 1), ev("f1", 4000, true, 2), other(10500), other(11000), other(12000)},
			[]string{fired("f1", 2)}},
		{"deadline between two ticks: the next event of the thing fires it with its own output",
			[]string{ev("f1", 1500, true, 1), other(11000), ev("f1", 11700, true, 2)},
			[]string{fired("f1", 2)}},
		{"closed after the deadline without an event between: fires with the last open event, then resolves",
			[]string{ev("f1", 1500, true, 1), ev("f1", 11800, false, 2)},
			[]string{fired("f1", 1), resolved("f1", 1, 2)}},
		{"closed before the deadline: nothing",
			[]string{ev("f1", 1000, true, 1), ev("f1", 10999, false, 2), other(30000)},
			nil},
		{"due episodes of one tick fire by deadline, then thing",
			[]string{ev("f2", 1200, true, 1), ev("f1", 1200, true, 2), ev("f3", 1100, true, 3), other(12000)},
			[]string{fired("f3", 3), fired("f1", 2), fired("f2", 1)}},
	}
	set := load(t, rules)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := Run(context.Background(), set, strings.NewReader(strings.Join(tt.input, "\n")), &out, Options{}); err != nil {
				t.Fatal(err)
			}
			got := strings.Fields(out.String())
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("output:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestInputLocation: partition and offset given in the input (as
// iotpipe events --json writes them) are what traceid() and the
// functions reading the event's place in the log see; type keeps events
// rules do not see (subscribe events) away from them.
func TestInputLocation(t *testing.T) {
	set := load(t, "SELECT traceid() AS id FROM 't'")
	in := `{"topic":"t","payload":{},"partition":3,"offset":17}
{"topic":"t","payload":{},"partition":3,"offset":17,"type":"subscribed"}
{"topic":"t","payload":{},"type":"connected"}`
	var out bytes.Buffer
	if err := Run(context.Background(), set, strings.NewReader(in), &out, Options{}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(out.String())
	if len(lines) != 2 {
		t.Fatalf("outputs:\n%s\nwant 2 (the subscribe event is not routed)", out.String())
	}
	var o struct{ Output struct{ ID string } }
	if err := json.Unmarshal([]byte(lines[0]), &o); err != nil {
		t.Fatal(err)
	}
	want, _, _ := set.Rules[0].Eval(&rulesql.Input{Topic: "t", Partition: 3, Offset: 17, Payload: map[string]any{}}, nil)
	if o.Output.ID != want.(map[string]any)["id"] {
		t.Errorf("traceid %q, want %v (partition 3, offset 17)", o.Output.ID, want)
	}
}

func load(t *testing.T, src string) *rulesql.Set {
	t.Helper()
	rules, err := rulesql.Compile(src)
	if err != nil {
		t.Fatal(err)
	}
	set, err := rulesql.NewSet(rules)
	if err != nil {
		t.Fatal(err)
	}
	return set
}
