package processors

import (
	"encoding/binary"
	"maps"
	"testing"
)

// TestOfflineState: a stopped runner's state directory read and replaced
// offline (iotpipe rebuild): it cannot be opened while the runner holds
// it; a partition's state equals its changelog's; replacing one
// processor's keys leaves the others; and a changelog written under the
// partition's transactional id is what a runner restores at its next
// start.
func TestOfflineState(t *testing.T) {
	g := newRig(t)
	dir := t.TempDir()
	n := g.start(dir, counter{"c1", g.topics.Outbound}, counter{"c2", g.topics.Actions})
	g.send(200)
	g.waitOutputs(200)
	if _, err := OpenStateDir(dir); err == nil {
		t.Fatal("the state dir opened while its runner runs")
	}
	n.close(t)

	sd, err := OpenStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var p int32 = -1
	for i := range int32(4) {
		state, end, err := sd.Partition(i)
		if err != nil {
			t.Fatal(err)
		}
		cl, clEnd, err := ChangelogState(g.ctx, g.l, g.topics.Changelog, i)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.EqualFunc(state, cl, func(a, b []byte) bool { return string(a) == string(b) }) || end != clEnd {
			t.Errorf("partition %d: local state (end %d) differs from the changelog's (end %d)", i, end, clEnd)
		}
		if len(state) > 0 && NextOffset(state) > 0 {
			p = i
		}
	}
	if p < 0 {
		t.Fatal("no partition has state")
	}
	state, end, _ := sd.Partition(p)
	// Replace c1's keys only: c1 of thing X set to 1000, the rest of c1
	// gone; c2 untouched.
	var thing string
	for k := range state {
		if len(k) > 3 && k[:3] == "c1\x00" {
			thing = k[3:]
			break
		}
	}
	repl := map[string][]byte{"c1\x00" + thing: binary.BigEndian.AppendUint64(nil, 1000), "c2\x00" + thing: []byte("ignored")}
	if err := sd.Replace(p, []string{"c1"}, repl, end); err != nil {
		t.Fatal(err)
	}
	after, _, _ := sd.Partition(p)
	for k, v := range after {
		switch {
		case k[:3] == "c1\x00" && (k != "c1\x00"+thing || binary.BigEndian.Uint64(v) != 1000):
			t.Errorf("c1 key %q = %x after replacing c1", k, v)
		case k[:3] == "c2\x00" && string(v) != string(state[k]):
			t.Errorf("c2 key %q changed: %x -> %x", k, state[k], v)
		}
	}

	// Write c1 of thing as 500 to the changelog: the next runner sees
	// its local state behind the changelog, restores it, and counts on
	// from 500.
	newEnd, err := WriteChangelog(g.ctx, g.l, RunnerOptions{Topics: g.topics}, p, map[string][]byte{"c1\x00" + thing: binary.BigEndian.AppendUint64(nil, 500)})
	if err != nil {
		t.Fatal(err)
	}
	if newEnd <= end {
		t.Errorf("changelog end %d after a write, was %d", newEnd, end)
	}
	if err := sd.Close(); err != nil {
		t.Fatal(err)
	}
	n = g.start(dir, counter{"c1", g.topics.Outbound}, counter{"c2", g.topics.Actions})
	prod := g.prod
	if err := prod.ProduceSync(g.ctx, countRecord(thing, 0, "ok")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out := g.waitOutputs(201)
	n.close(t)
	if out[thing+":501"] != 1 {
		t.Errorf("after the changelog write, %s counted on to %v; want %s:501", thing, out, thing)
	}
}
