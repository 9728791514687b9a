package replay

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/lastseen"
	"github.com/iotpipe/iotpipe/processors/rules"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/iotpipe/iotpipe/schemas"
)

// nodeProcessors returns the processors of a node running rules.
func nodeProcessors(t testing.TB, topics schemas.Topics, src string) func() ([]processors.Processor, error) {
	set := compileRules(t, src)
	return func() ([]processors.Processor, error) {
		rp := rules.New(rules.Options{Topics: topics, Shadow: shadow.NewReader(nil), Logger: logtest.Quiet()})
		rp.SetRules(set)
		return []processors.Processor{lastseen.Processor{}, shadow.New(shadow.Options{Topics: topics}), rp}, nil
	}
}

// runNode runs a runner with procs over the whole log, and stops it once
// every partition's state is at the log's end.
func (h *history) runNode(dir string, procs func() ([]processors.Processor, error)) {
	h.t.Helper()
	ps, err := procs()
	if err != nil {
		h.t.Fatal(err)
	}
	r, err := processors.NewRunner(h.l, ps, processors.RunnerOptions{Topics: h.l.Topics(), StateDir: dir, Logger: logtest.Quiet(), TickInterval: 20 * time.Millisecond})
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	topics := h.l.Topics()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		caught := true
		for p := range h.l.Partitions() {
			end, err := eventlog.EndOffset(ctx, h.l.Client, topics.Events, p)
			if err != nil {
				h.t.Fatal(err)
			}
			cl, _, err := processors.ChangelogState(ctx, h.l, topics.Changelog, p)
			if err != nil {
				h.t.Fatal(err)
			}
			caught = caught && (end == 0 || processors.NextOffset(cl) == end)
		}
		if caught {
			break
		}
		if time.Now().After(deadline) {
			h.t.Fatal("the node did not catch up with the log")
		}
	}
	cancel()
	if err := errors.Join(<-done, r.Close()); err != nil {
		h.t.Fatal(err)
	}
}

func dumpAll(t *testing.T, dir string) map[string]map[string]string {
	t.Helper()
	out := map[string]map[string]string{}
	for _, p := range []string{lastseen.Name, shadow.Name, rules.Name} {
		d, err := processors.DumpState(dir, p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = d
	}
	return out
}

func shadowHistory() []ev {
	evs := scenario()
	for i := range 6 {
		thing := fmt.Sprintf("lamp-%d", i)
		for v := range 3 {
			evs = append(evs, ev{thing: thing, topic: "$aws/things/" + thing + "/shadow/update", at: time.Duration(v*7+i) * time.Second,
				payload: fmt.Sprintf(`{"state":{"reported":{"on":%t,"level":%d}}}`, v%2 == 0, v)})
		}
	}
	return evs
}

// TestRebuild: on a stopped node, rebuilding from the changelog gives
// the live state byte for byte, with its state dir intact or gone;
// rebuilding from the events gives it too; and a
// changelog that went wrong is corrected from the events, locally and in
// the changelog.
func TestRebuild(t *testing.T) {
	h := newHistory(t, 4)
	h.produce(shadowHistory()...)
	topics := h.l.Topics()
	procs := nodeProcessors(t, topics, scenarioRules)
	dir := filepath.Join(t.TempDir(), "state")
	h.runNode(dir, procs)
	live := dumpAll(t, dir)
	if len(live[shadow.Name]) == 0 || len(live[lastseen.Name]) == 0 || len(live[rules.Name]) == 0 {
		t.Fatalf("live state: %d shadow, %d lastseen, %d rules keys", len(live[shadow.Name]), len(live[lastseen.Name]), len(live[rules.Name]))
	}
	ctx := context.Background()
	rebuild := func(o RebuildOptions) *RebuildReport {
		t.Helper()
		o.Clients, o.StateDir, o.Topics, o.NewProcessors, o.Logger = h.l, dir, topics, procs, logtest.Quiet()
		rep, err := Rebuild(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	same := func(what string, names ...string) {
		t.Helper()
		got := dumpAll(t, dir)
		for _, n := range names {
			if !maps.Equal(got[n], live[n]) {
				t.Errorf("%s: %s state differs from the live one (%d keys, live %d)", what, n, len(got[n]), len(live[n]))
			}
		}
	}

	rep := rebuild(RebuildOptions{})
	same("from the changelog", lastseen.Name, shadow.Name, rules.Name)
	if rep.Processors[shadow.Name].Differed != 0 || len(rep.Whole) != 0 {
		t.Errorf("report %+v: nothing should have differed", rep.Processors[shadow.Name])
	}

	// The state dir lost: restored whole from the changelog.
	if err := removeAll(dir); err != nil {
		t.Fatal(err)
	}
	rep = rebuild(RebuildOptions{Processors: []string{shadow.Name}})
	same("a lost state dir, from the changelog", lastseen.Name, shadow.Name, rules.Name)
	if len(rep.Whole) != 4 || rep.Processors[shadow.Name].Differed != len(live[shadow.Name]) {
		t.Errorf("report %+v whole %v", rep.Processors[shadow.Name], rep.Whole)
	}

	// From the events, every processor (the rules' timers here all fire
	// on the events' time: none is pending at the end).
	rep = rebuild(RebuildOptions{FromEvents: true})
	same("from the events", lastseen.Name, shadow.Name, rules.Name)
	for _, n := range []string{lastseen.Name, shadow.Name, rules.Name} {
		if c := rep.Processors[n]; c.Written != 0 || c.Differed != 0 || c.Keys != len(live[n]) {
			t.Errorf("from the events, %s: %+v (live %d keys)", n, c, len(live[n]))
		}
	}

	// A wrong value in the changelog (a bug, say): the changelog rebuild
	// brings it in; the events rebuild corrects it in both places.
	p := PartitionOf("s1", 4)
	if _, err := processors.WriteChangelog(ctx, h.l, processors.RunnerOptions{Topics: topics}, p,
		map[string][]byte{lastseen.Name + "\x00s1": []byte(`{"wrong":true}`)}); err != nil {
		t.Fatal(err)
	}
	rebuild(RebuildOptions{Processors: []string{lastseen.Name}})
	if got := dumpAll(t, dir)[lastseen.Name][fmt.Sprintf("%d/s1", p)]; got != `{"wrong":true}` {
		t.Fatalf("changelog rebuild: s1 = %s", got)
	}
	rep = rebuild(RebuildOptions{Processors: []string{lastseen.Name}, FromEvents: true})
	same("corrected from the events", lastseen.Name, shadow.Name, rules.Name)
	if rep.Processors[lastseen.Name].Written != 1 || rep.Processors[lastseen.Name].Differed != 1 {
		t.Errorf("correction report %+v", rep.Processors[lastseen.Name])
	}
	cl, _, err := processors.ChangelogState(ctx, h.l, topics.Changelog, p)
	if err != nil {
		t.Fatal(err)
	}
	if string(cl[lastseen.Name+"\x00s1"]) != live[lastseen.Name][fmt.Sprintf("%d/s1", p)] {
		t.Errorf("the changelog still holds %s", cl[lastseen.Name+"\x00s1"])
	}
	// The node starts on the rebuilt state and carries on.
	h.produce(ev{thing: "s1", topic: "farm/s1/temp", payload: `{"temp":21}`, at: 2 * time.Minute})
	h.runNode(dir, procs)
}

// TestRebuildRefusesLostEvents: a rebuild from events the log no longer
// holds from the start is refused, naming what to do.
func TestRebuildRefusesLostEvents(t *testing.T) {
	h := newHistory(t, 1)
	h.produce(scenario()[:20]...)
	dir := filepath.Join(t.TempDir(), "state")
	procs := nodeProcessors(t, h.l.Topics(), "SELECT 1 FROM 'x'")
	h.runNode(dir, procs)
	cl, err := h.l.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := deleteRecords(cl, h.l.Topics().Events, 0, 5); err != nil {
		t.Fatal(err)
	}
	_, err = Rebuild(context.Background(), RebuildOptions{Clients: h.l, StateDir: dir, Topics: h.l.Topics(), NewProcessors: procs, FromEvents: true, Logger: logtest.Quiet()})
	if err == nil || !containsAll(err.Error(), "before offset 5", "without --from-events") {
		t.Errorf("error %v", err)
	}
}

// TestRebuildFromEventsTicksNoFurtherThanTheNode: on a running node, a
// rebuild from the events ticks no further than the node's last tick: a
// FOR episode due after it stays pending (the node fires it, once), one
// due before it has fired (the node fired it: it is not pending again),
// whatever later events' receive times say. A stopped node's rebuild
// (no last tick) ticks on the events' times.
func TestRebuildFromEventsTicksNoFurtherThanTheNode(t *testing.T) {
	h := newHistory(t, 1)
	h.produce(
		ev{thing: "d", topic: "f/d", payload: `{"v":1}`},
		ev{thing: "d", topic: "f/d", payload: `{"v":1}`, at: time.Second},
		ev{thing: "e", topic: "f/e", payload: `{"v":0}`, at: 10 * time.Second},
	)
	topics := h.l.Topics()
	o := RebuildOptions{Clients: h.l, Topics: topics, FromEvents: true, Logger: logtest.Quiet(),
		NewProcessors: nodeProcessors(t, topics, `CREATE RULE held AS SELECT v FROM 'f/+' WHERE v > 0 FOR 3 SECONDS`)}
	state := func(tickTo time.Time) map[string]string {
		t.Helper()
		kv, err := o.fromEvents(context.Background(), 0, 3, tickTo)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for k, v := range kv {
			if k != processors.OffsetKey && k[:len(rules.Name)] == rules.Name {
				out[k] = string(v)
			}
		}
		return out
	}
	stopped := state(time.Time{})            // ticked at 10 s: fired at 3 s
	before := state(t0.Add(2 * time.Second)) // the node ticked last at 2 s: pending
	after := state(t0.Add(5 * time.Second))  // at 5 s: fired
	if maps.Equal(stopped, before) {
		t.Fatalf("a rebuild capped at the node's tick before the deadline fired the episode: %v", before)
	}
	if !maps.Equal(stopped, after) {
		t.Fatalf("capped at a tick after the deadline: %v, want %v", after, stopped)
	}
	if before2 := state(t0.Add(2500 * time.Millisecond)); !maps.Equal(before, before2) {
		t.Fatalf("two ticks before the deadline give different states: %v, %v", before, before2)
	}
}

// TestEventBuilderInSteps: a running node's rebuild reads most events
// before it holds the partition (bounded by the node's last tick then)
// and the rest while it holds it (bounded by its last tick now): the
// state equals one pass to the later bound, whatever the first bound.
func TestEventBuilderInSteps(t *testing.T) {
	h := newHistory(t, 1)
	h.produce(scenario()...)
	topics := h.l.Topics()
	o := RebuildOptions{Clients: h.l, Topics: topics, FromEvents: true, Logger: logtest.Quiet(),
		NewProcessors: nodeProcessors(t, topics, scenarioRules)}
	ctx := context.Background()
	end, err := eventlog.EndOffset(ctx, h.l.Client, topics.Events, 0)
	if err != nil {
		t.Fatal(err)
	}
	last := t0.Add(45 * time.Second)
	want, err := o.fromEvents(ctx, 0, end, last)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		first time.Duration // the node's last tick before the hold
		next  int64         // its next offset then
	}{
		{5 * time.Second, end / 2},
		{20 * time.Second, end / 2},
		{20 * time.Second, end},
		{45 * time.Second, end - 1},
	} {
		b, err := o.newEventBuilder(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.advance(ctx, c.next, t0.Add(c.first), true); err != nil {
			t.Fatal(err)
		}
		if b.read > c.next {
			t.Fatalf("first step read to %d, past %d", b.read, c.next)
		}
		if err := b.advance(ctx, end, last, false); err != nil {
			t.Fatal(err)
		}
		got, err := b.state(ctx, last)
		b.close()
		if err != nil {
			t.Fatal(err)
		}
		if !maps.EqualFunc(got, want, func(a, b []byte) bool { return string(a) == string(b) }) {
			t.Errorf("first step to %d bounded at %v: the state differs from one pass (%d keys, %d)", c.next, c.first, len(got), len(want))
		}
	}
}
