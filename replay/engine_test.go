package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/rulesql/ruletest"
	"github.com/iotpipe/iotpipe/schemas"
)

// scenarioRules are the rules of the replay scenario: a plain rule, one
// with actions, an anomaly (pewma), a door that must stay open FOR 10
// seconds (with RESOLVE), an offline device FOR 15 seconds, lifecycle
// events, and traceid() (the event's place in the log).
const scenarioRules = `CREATE RULE hot AS SELECT temp, topic(2) AS sensor FROM 'farm/+/temp' WHERE temp > 30;
CREATE RULE alert AS SELECT temp, clientid() AS device, traceid() AS trace FROM 'farm/+/temp' WHERE temp > 40
  THEN webhook(url => 'https://hooks.example/${topic(2)}'), republish(topic => 'alerts/${clientid()}');
CREATE RULE spike AS SELECT temp, pewma(temp) AS p FROM 'farm/+/temp' WHERE p.anomaly;
CREATE RULE door AS SELECT topic(2) AS door, open, n FROM 'door/+/state' WHERE open = true FOR 10 SECONDS RESOLVE
  THEN command(thing => '${topic(2)}', payload => '{"close": true}');
CREATE RULE offline AS SELECT clientid() AS device FROM '$aws/events/presence/+/+' WHERE eventType = 'disconnected' FOR 15 SECONDS;
CREATE RULE seen AS SELECT clientid() AS device, eventType FROM '$aws/events/presence/connected/+'`

// scenario is a known history: four sensors every second for a minute
// (one spikes at 40 s and overheats at 45 s), a door open at 5 s that
// stays open (its sensor goes quiet), a second door open at 20 s that
// reports again at 26 s and closes at 50 s, and a device that connects,
// disconnects at 10 s and never comes back.
func scenario() []ev {
	var evs []ev
	presence := func(typ schemas.EventType, at time.Duration) ev {
		return ev{thing: "gw", typ: typ, at: at, topic: "$aws/events/presence/" + string(typ) + "/gw",
			payload: fmt.Sprintf(`{"clientId":"gw","eventType":"%s","timestamp":%d}`, typ, t0.Add(at).UnixMilli())}
	}
	evs = append(evs, presence(schemas.EventConnected, 500*time.Millisecond))
	for s := range 60 {
		for i := range 4 {
			temp := 20 + float64(i) + 0.1*float64(s%3)
			if i == 2 && s == 40 {
				temp = 80
			}
			if i == 3 && s >= 45 {
				temp = 45
			}
			at := time.Duration(s)*time.Second + time.Duration(i)*37*time.Millisecond
			evs = append(evs, ev{thing: fmt.Sprintf("s%d", i), topic: fmt.Sprintf("farm/s%d/temp", i), at: at, payload: fmt.Sprintf(`{"temp":%g}`, temp)})
		}
		switch s {
		case 5:
			evs = append(evs, ev{thing: "d1", topic: "door/d1/state", at: 5*time.Second + 600*time.Millisecond, payload: `{"open":true,"n":1}`})
		case 10:
			evs = append(evs, presence(schemas.EventDisconnected, 10*time.Second+200*time.Millisecond))
		case 20:
			evs = append(evs, ev{thing: "d2", topic: "door/d2/state", at: 20*time.Second + 300*time.Millisecond, payload: `{"open":true,"n":1}`})
		case 26:
			evs = append(evs, ev{thing: "d2", topic: "door/d2/state", at: 26*time.Second + 900*time.Millisecond, payload: `{"open":true,"n":2}`})
		case 50:
			evs = append(evs, ev{thing: "d2", topic: "door/d2/state", at: 50*time.Second + 100*time.Millisecond, payload: `{"open":false,"n":3}`})
		}
	}
	return evs
}

func compileRules(t testing.TB, src string) *rulesql.Set {
	t.Helper()
	rules, err := rulesql.Compile(src, rulesql.WithFile("scenario.sql"))
	if err != nil {
		t.Fatal(err)
	}
	set, err := rulesql.NewSet(rules)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// replayLines replays set over sel and returns the output lines and the
// summary.
func (h *history) replayLines(set *rulesql.Set, sel Selection) ([]string, Summary) {
	h.t.Helper()
	var lines []string
	eng, err := NewEngine(set, Options{Topics: h.l.Topics(), Partitions: h.l.Partitions()}, func(o Output) error {
		lines = append(lines, string(o.Line))
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.each(sel, eng.Add, eng.Close)
	return lines, eng.Summary()
}

// rulesTestLines exports sel as iotpipe events --json does and runs
// rules test over it.
func (h *history) rulesTestLines(set *rulesql.Set, sel Selection) []string {
	h.t.Helper()
	evs, _ := h.read(sel)
	var in []byte
	for _, e := range evs {
		var err error
		if in, err = AppendJSON(in, e); err != nil {
			h.t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := ruletest.Run(context.Background(), set, bytes.NewReader(in), &out, ruletest.Options{}); err != nil {
		h.t.Fatal(err)
	}
	return lines(out.String())
}

// lines splits output into its lines.
func lines(s string) []string {
	if s = strings.TrimSuffix(s, "\n"); s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestReplayEqualsRulesTest is the acceptance property: replaying a
// time window gives exactly what iotpipe rules test gives for the same
// events exported with iotpipe events --json, for windows that cut the
// history anywhere, with rules that tick (FOR) and without (the engine
// then holds events across seconds).
func TestReplayEqualsRulesTest(t *testing.T) {
	h := newHistory(t, 4)
	h.produce(scenario()...)
	var noTicks []string
	for _, r := range strings.Split(scenarioRules, ";\n") {
		if !strings.Contains(r, " FOR ") {
			noTicks = append(noTicks, r)
		}
	}
	sets := []struct {
		name string
		set  *rulesql.Set
		// quiet are the windows where the set has nothing to say.
		quiet []string
	}{
		{"rules that tick", compileRules(t, scenarioRules), nil},
		{"no rule that ticks", compileRules(t, strings.Join(noTicks, ";\n")), []string{"one thing", "3s to 30s: the first door fires, the second does not yet"}},
	}
	windows := []struct {
		name string
		sel  Selection
	}{
		{"everything", Selection{}},
		{"3s to 30s: the first door fires, the second does not yet", Selection{From: t0.Add(3 * time.Second), To: t0.Add(30 * time.Second)}},
		{"21s to 55s: the second door's episode starts at its 26.9s event", Selection{From: t0.Add(21 * time.Second), To: t0.Add(55 * time.Second)}},
		{"from the disconnect on", Selection{From: t0.Add(10200 * time.Millisecond)}},
		{"one thing", Selection{Thing: "d2"}},
		{"one topic filter, up to 47s", Selection{Topic: "farm/+/temp", To: t0.Add(47 * time.Second)}},
	}
	for _, s := range sets {
		if got := len(s.set.Rules); got < 4 {
			t.Fatalf("%s: %d rules", s.name, got)
		}
		for _, w := range windows {
			sel := w.sel
			t.Run(s.name+"/"+w.name, func(t *testing.T) {
				got, _ := h.replayLines(s.set, sel)
				want := h.rulesTestLines(s.set, sel)
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("replay:\n%s\nrules test:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
				}
				if len(got) == 0 && !slices.Contains(s.quiet, w.name) {
					t.Error("no outputs: the window shows nothing")
				}
			})
		}
	}
}

// TestReplayScenario checks the outputs of the scenario one by one.
func TestReplayScenario(t *testing.T) {
	h := newHistory(t, 4)
	h.produce(scenario()...)
	set := compileRules(t, scenarioRules)
	got, sum := h.replayLines(set, Selection{From: t0.Add(2 * time.Second), To: t0.Add(52 * time.Second)})
	count := map[string]int{}
	var doors, spikes, offline []string
	for _, l := range got {
		var o ruletest.Output
		if err := json.Unmarshal([]byte(l), &o); err != nil {
			t.Fatal(err)
		}
		count[o.Rule]++
		switch {
		case strings.Contains(l, `"rule":"door"`):
			doors = append(doors, l)
		case strings.Contains(l, `"rule":"spike"`):
			spikes = append(spikes, l)
		case strings.Contains(l, `"rule":"offline"`):
			offline = append(offline, l)
		}
	}
	wantDoors := []string{
		// d1 stays open from 5.6 s: fires at the tick of second 16, with its only event.
		`{"rule":"door","output":{"door":"d1","n":1,"open":true},"actions":[{"type":"command","params":{"payload":"{\"close\": true}","thing":"d1"}}]}`,
		// d2 open at 20.3 s, again at 26.9 s: fires at 31 s with its last open event, resolves when it closes at 50.1 s.
		`{"rule":"door","output":{"door":"d2","n":2,"open":true},"actions":[{"type":"command","params":{"payload":"{\"close\": true}","thing":"d2"}}]}`,
		`{"rule":"door","output":{"door":"d2","n":2,"open":true},"actions":[{"type":"command","params":{"payload":"{\"close\": true}","thing":"d2"}}],"resolved":true}`,
	}
	if strings.Join(doors, "\n") != strings.Join(wantDoors, "\n") {
		t.Errorf("door outputs:\n%s\nwant:\n%s", strings.Join(doors, "\n"), strings.Join(wantDoors, "\n"))
	}
	if len(offline) != 1 || !strings.Contains(offline[0], `"device":"gw"`) {
		t.Errorf("offline outputs %q: the gateway disconnected at 10.2 s and stayed away", offline)
	}
	if len(spikes) == 0 || !strings.Contains(spikes[0], `"temp":80`) {
		t.Errorf("spike outputs %q: the first must be s2's 80 at 40 s", spikes)
	}
	// s2 once at 40 s, s3 from 45 s to 51 s: 8 times above 30, and 40.
	if count["hot"] != 8 || count["alert"] != 8 || count["seen"] != 0 {
		t.Errorf("outputs per rule %v; want hot 8, alert 8 (s2's spike, s3 from 45 s to 51 s), seen 0 (connected before the window)", count)
	}
	for _, r := range sum.Rules {
		if r.Errors != 0 || int64(count[r.Rule]) != r.Fired {
			t.Errorf("summary %+v, %d outputs printed", r, count[r.Rule])
		}
	}
	if sum.Events == 0 || sum.First.Before(t0.Add(2*time.Second)) || !sum.Last.Before(t0.Add(52*time.Second)) {
		t.Errorf("summary %+v", sum)
	}
}

// TestReplayWindows: GROUP BY windows run too (rules test leaves them
// to the processors), closed by the ticks of event time: a window closes
// at the first tick at or after its end; the last one, not closed by the
// end of the history, gives nothing.
func TestReplayWindows(t *testing.T) {
	h := newHistory(t, 4)
	h.produce(scenario()...)
	set := compileRules(t, `SELECT clientid() AS sensor, count(*) AS n, max(temp) AS hi FROM 'farm/+/temp' GROUP BY TUMBLE(10 SECONDS), clientid()`)
	got, sum := h.replayLines(set, Selection{})
	if len(got) != 20 || sum.Rules[0].Fired != 20 {
		t.Fatalf("%d outputs (summary %+v), want 5 closed windows of 4 sensors:\n%s", len(got), sum.Rules[0], strings.Join(got, "\n"))
	}
	for _, l := range got[:4] {
		if !strings.Contains(l, `"n":10`) {
			t.Errorf("first window: %s, want 10 events", l)
		}
	}
	if !strings.Contains(strings.Join(got, "\n"), `{"rule":"scenario","output":{"hi":80,"n":10,"sensor":"s2"}}`) {
		t.Errorf("no window with s2's spike:\n%s", strings.Join(got, "\n"))
	}
}
