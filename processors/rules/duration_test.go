package rules

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas"
)

const fridge = `CREATE RULE door AS
SELECT state.reported.DoorOpened AS open, clientid() AS fridge FROM 'fridge/+/state'
WHERE state.reported.DoorOpened = true FOR 10 MINUTES RESOLVE
THEN webhook(url => 'http://h/door/${clientid()}')`

func TestDurationFiresOnTickAndResolves(t *testing.T) {
	g := newRig(t, fridge, Options{})
	t0 := g.h.Now
	at := func(d time.Duration) { g.h.Now = t0.Add(d) }
	open, closed := `{"state":{"reported":{"DoorOpened":true}}}`, `{"state":{"reported":{"DoorOpened":false}}}`

	at(0)
	g.publish("f1", "fridge/f1/state", open) // offset 0: episode starts
	g.publish("f2", "fridge/f2/state", open) // offset 1
	at(3 * time.Minute)
	if acts := actions(t, g.publish("f2", "fridge/f2/state", closed)); len(acts) != 0 {
		t.Errorf("closed early: %+v", acts)
	}
	at(5 * time.Minute)
	g.publish("f1", "fridge/f1/state", open) // still open
	at(9 * time.Minute)
	if acts := actions(t, g.tick()); len(acts) != 0 {
		t.Errorf("tick before the deadline fired %+v", acts)
	}
	g.restart() // the timer survives a restart
	at(10 * time.Minute)
	acts := actions(t, g.tick())
	if len(acts) != 1 {
		t.Fatalf("tick at the deadline: %+v", acts)
	}
	a := acts[0]
	if a.Key != "0/0/door/0" || a.Params["url"] != "http://h/door/f1" || a.FiredAt != t0.Add(10*time.Minute).UnixMilli() ||
		!reflect.DeepEqual(a.Payload, map[string]any{"open": true, "fridge": "f1"}) {
		t.Errorf("fired = %+v", a)
	}
	at(11 * time.Minute)
	if acts := actions(t, g.tick()); len(acts) != 0 {
		t.Errorf("fired twice: %+v", acts)
	}
	g.publish("f1", "fridge/f1/state", open) // offset 4: no second firing
	at(12 * time.Minute)
	acts = actions(t, g.publish("f1", "fridge/f1/state", closed)) // offset 5
	if len(acts) != 1 {
		t.Fatalf("resolve: %+v", acts)
	}
	if r := acts[0]; r.Key != "0/5/door/0" || !reflect.DeepEqual(r.Payload, map[string]any{"open": true, "fridge": "f1", "resolved": true}) {
		t.Errorf("resolved = %+v", r)
	}
	// A new episode fires from an event past its deadline, with no tick.
	at(20 * time.Minute)
	g.publish("f1", "fridge/f1/state", open) // offset 6
	at(31 * time.Minute)
	acts = actions(t, g.publish("f1", "fridge/f1/state", open))
	if len(acts) != 1 || acts[0].Key != "0/6/door/0" {
		t.Errorf("second episode = %+v", acts)
	}
}

func TestHotReloadKeepsOldVersionOfBrokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string, age time.Duration) {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		mt := time.Now().Add(-age)
		os.Chtimes(path, mt, mt)
	}
	write("lux.sql", `CREATE RULE lux AS SELECT lux FROM 'g/+/lux' WHERE lux > 100 THEN kafka(topic => 'v1')`, time.Hour)
	write("temp.sql", `CREATE RULE temp AS SELECT t FROM 'g/+/t' THEN kafka(topic => 't')`, time.Hour)
	p := New(Options{})
	if err := p.Reload(dir); err != nil {
		t.Fatal(err)
	}
	h, err := processors.NewHarness(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fire := func(topic, payload string) []string {
		recs, err := h.Publish(context.Background(), "g1", schemas.Envelope{Topic: topic}, []byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, a := range actions(t, recs) {
			out = append(out, a.Rule+":"+a.Params["topic"].(string))
		}
		return out
	}
	if got := fire("g/1/lux", `{"lux": 500}`); !reflect.DeepEqual(got, []string{"lux:v1"}) {
		t.Fatalf("v1 = %v", got)
	}
	// A broken edit: the error is reported, the old version keeps firing.
	write("lux.sql", `CREATE RULE lux AS SELECT lux FROM 'g/+/lux' WHERE lux > THEN kafka(topic => 'v2')`, 30*time.Minute)
	err = p.Reload(dir)
	if err == nil || !strings.Contains(err.Error(), "lux.sql:1:") {
		t.Fatalf("reload error = %v", err)
	}
	if got := fire("g/1/lux", `{"lux": 500}`); !reflect.DeepEqual(got, []string{"lux:v1"}) {
		t.Errorf("after a broken edit = %v", got)
	}
	st := p.Status()
	if st.Errors != 1 || len(st.Files) != 2 || !strings.Contains(st.Files[0].Error, "lux.sql:1:") ||
		!reflect.DeepEqual(st.Files[0].Rules, []string{"lux"}) || st.Files[1].Error != "" {
		t.Errorf("status files = %+v", st.Files)
	}
	// Another file changes meanwhile: it is picked up.
	write("temp.sql", `CREATE RULE temp2 AS SELECT t FROM 'g/+/t' THEN kafka(topic => 't2')`, 20*time.Minute)
	if err := p.Reload(dir); err == nil {
		t.Error("the broken file's error disappeared")
	}
	if got := fire("g/1/t", `{"t": 1}`); !reflect.DeepEqual(got, []string{"temp2:t2"}) {
		t.Errorf("temp.sql edit = %v", got)
	}
	// The fix is loaded.
	write("lux.sql", `CREATE RULE lux AS SELECT lux FROM 'g/+/lux' WHERE lux > 100 THEN kafka(topic => 'v3')`, 10*time.Minute)
	if err := p.Reload(dir); err != nil {
		t.Fatal(err)
	}
	if got := fire("g/1/lux", `{"lux": 500}`); !reflect.DeepEqual(got, []string{"lux:v3"}) {
		t.Errorf("after the fix = %v", got)
	}
	// A name clash with another file is refused like a syntax error.
	write("clash.sql", `CREATE RULE lux AS SELECT 1 FROM 'x' THEN kafka(topic => 'x')`, 0)
	if err := p.Reload(dir); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("clash: %v", err)
	}
	if got := fire("g/1/lux", `{"lux": 500}`); !reflect.DeepEqual(got, []string{"lux:v3"}) {
		t.Errorf("after the clash = %v", got)
	}
	var fileErr int
	for _, f := range p.Status().Files {
		if f.Error != "" {
			fileErr++
			if !strings.HasSuffix(f.Path, "clash.sql") {
				t.Errorf("error on %s", f.Path)
			}
		}
	}
	if fileErr != 1 {
		t.Errorf("%d files in error", fileErr)
	}
}

func TestWatchPicksUpChanges(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.sql")
	os.WriteFile(path, []byte(`CREATE RULE a AS SELECT 1 FROM 'a' THEN kafka(topic => 'a')`), 0o644)
	p := New(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Watch(ctx, dir, 5*time.Millisecond) }()
	waitFor := func(name string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for p.Rules().Rule(name) == nil {
			if time.Now().After(deadline) {
				t.Fatalf("rule %s never loaded", name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("a")
	os.WriteFile(filepath.Join(dir, "b.sql"), []byte(`CREATE RULE b AS SELECT 1 FROM 'b' THEN kafka(topic => 'b')`), 0o644)
	waitFor("b")
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Watch returned %v", err)
	}
}

// TestDeterministicState runs the same events (every kind of rule) twice
// into fresh harnesses: the emitted records and the state are identical.
func TestDeterministicState(t *testing.T) {
	src := greenhouse + ";" + fridge + `;
CREATE RULE spikes AS SELECT pewma(lux) AS a FROM 'greenhouse/+/lux' WHERE a.anomaly THEN kafka(topic => 's');
CREATE RULE per_min AS SELECT count(*) AS n, avg(lux) AS mean FROM 'greenhouse/+/lux' GROUP BY TUMBLE(INTERVAL 1 MINUTE), topic(2)
THEN kafka(topic => 'm')`
	run := func() ([]string, map[string]string) {
		g := newRig(t, src, Options{})
		t0 := g.h.Now
		var out []string
		for i := range 300 {
			g.h.Now = t0.Add(time.Duration(i) * 7 * time.Second)
			lux := 30000 + (i*7919)%10000
			if i%50 == 49 {
				lux = 90000
			}
			recs := g.publish("gh-1", "greenhouse/gh-1/lux", `{"lux": `+itoa(lux)+`}`)
			recs = append(recs, g.publish("f1", "fridge/f1/state", `{"state":{"reported":{"DoorOpened":`+map[bool]string{true: "true", false: "false"}[i%120 < 100]+`}}}`)...)
			if i%10 == 0 {
				recs = append(recs, g.tick()...)
			}
			for _, r := range recs {
				out = append(out, r.Topic+" "+string(r.Key)+" "+string(r.Value))
			}
		}
		snap, err := g.h.Snapshot(0)
		if err != nil {
			t.Fatal(err)
		}
		return out, snap
	}
	out1, snap1 := run()
	out2, snap2 := run()
	if !reflect.DeepEqual(out1, out2) {
		t.Error("emitted records differ between runs")
	}
	if !reflect.DeepEqual(snap1, snap2) {
		t.Error("state snapshots differ between runs")
	}
	kinds := map[string]int{}
	for _, o := range out1 {
		kinds[strings.SplitN(o, " ", 2)[0]]++
	}
	if kinds[topics.Actions] == 0 || kinds[topics.Aggregates] == 0 || kinds[topics.Anomalies] == 0 {
		t.Errorf("run did not exercise every output: %v", kinds)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// An event older than the episode's start (out of order: a device's
// buffered reading, or an HTTP publish racing MQTT) is stale for the
// timer and must leave the episode, its record included, as it was: the
// timer still fires at the deadline with the episode's output.
func TestStaleEventKeepsEpisode(t *testing.T) {
	g := newRig(t, fridge, Options{})
	t0 := g.h.Now
	at := func(d time.Duration) { g.h.Now = t0.Add(d) }
	open, closed := `{"state":{"reported":{"DoorOpened":true}}}`, `{"state":{"reported":{"DoorOpened":false}}}`

	at(5 * time.Minute)
	g.publish("f1", "fridge/f1/state", open) // offset 0: episode since 5m
	at(2 * time.Minute)
	if recs := g.publish("f1", "fridge/f1/state", closed); len(actions(t, recs)) != 0 || len(only(recs, topics.DLQ)) != 0 {
		t.Fatalf("stale closed event: %v", recs)
	}
	at(15 * time.Minute)
	recs := g.tick()
	if dl := only(recs, topics.DLQ); len(dl) != 0 {
		t.Fatalf("tick dead-lettered: %s", dl[0].Value)
	}
	acts := actions(t, recs)
	if len(acts) != 1 || acts[0].Key != "0/0/door/0" || !reflect.DeepEqual(acts[0].Payload, map[string]any{"open": true, "fridge": "f1"}) {
		t.Fatalf("fired = %+v", acts)
	}
}
