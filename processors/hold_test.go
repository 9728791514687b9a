package processors

import (
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Partitions held on a running node, one after another, while events
// keep coming: each one's counters are read, corrected (+1000) in the
// changelog through the partition's own producer and replaced locally;
// the next events count on from the corrected values (the memos
// forgotten), each event is counted once, the node is never fenced nor
// restored, and a node restoring from the changelog gets the same state.
func TestHoldCorrectsStateOnARunningNode(t *testing.T) {
	g := newRig(t)
	g.send(400)
	dir := t.TempDir()
	a := g.start(dir)
	g.waitOutputs(400)
	ctx := context.Background()
	if ps := a.r.Partitions(); len(ps) != 4 {
		t.Fatalf("partitions %v, want 4", ps)
	}
	if err := a.r.Hold(ctx, 7, func(*Held) error { return nil }); !errors.Is(err, ErrNotProcessed) {
		t.Fatalf("hold of a partition not processed: %v", err)
	}
	corrected := 0
	for _, p := range a.r.Partitions() {
		err := a.r.Hold(ctx, p, func(h *Held) error {
			g.send(20) // they wait for this partition
			state, _, err := h.State()
			if err != nil {
				return err
			}
			kv := map[string][]byte{}
			for k, v := range state {
				if strings.HasPrefix(k, "c1\x00") {
					kv[k] = binary.BigEndian.AppendUint64(nil, binary.BigEndian.Uint64(v)+1000)
					state[k] = kv[k]
				}
			}
			corrected += len(kv)
			end, err := h.WriteChangelog(ctx, kv)
			if err != nil {
				return err
			}
			return h.Replace([]string{"c1"}, state, end)
		})
		if err != nil {
			t.Fatalf("hold of partition %d: %v", p, err)
		}
	}
	if corrected != 20 {
		t.Fatalf("corrected %d counters, want 20", corrected)
	}
	g.send(100)
	total := int(g.sent.Load())
	out := g.waitOutputs(total)
	// Per thing: 1..k before its correction, 1001+k.. after, no gap.
	per := map[string][]int{}
	for k := range out {
		i := strings.LastIndexByte(k, ':')
		n, _ := strconv.Atoi(k[i+1:])
		per[k[:i]] = append(per[k[:i]], n)
	}
	for thing, ns := range per {
		k, after := 0, 0
		for _, n := range ns {
			if n < 1000 {
				k = max(k, n)
			} else {
				after++
			}
		}
		for i := 1; i <= k; i++ {
			if out[thing+":"+strconv.Itoa(i)] != 1 {
				t.Fatalf("%s: count %d missing before the correction", thing, i)
			}
		}
		for i := 1; i <= after; i++ {
			if out[thing+":"+strconv.Itoa(1000+k+i)] != 1 {
				t.Fatalf("%s: count %d missing after the correction (%d before it): %v", thing, 1000+k+i, k, ns)
			}
		}
		if after == 0 {
			t.Errorf("%s: nothing counted after the correction", thing)
		}
	}
	if n := testCounter(a.r.metrics.aborts); n != 0 {
		t.Errorf("%v batches aborted (fenced by the correction?)", n)
	}
	if n := testCounter(a.r.metrics.restores); n != 0 {
		t.Errorf("%v partitions restored", n)
	}
	a.close(t)
	if err := a.r.Hold(ctx, 0, func(*Held) error { return nil }); !errors.Is(err, ErrNotProcessed) {
		t.Fatalf("hold on a stopped runner: %v", err)
	}
	live, err := DumpState(dir, "c1")
	if err != nil {
		t.Fatal(err)
	}
	fresh := t.TempDir()
	b := g.start(fresh)
	time.Sleep(500 * time.Millisecond)
	g.waitOutputs(total)
	b.close(t)
	restored, err := DumpState(fresh, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != 20 || !maps.Equal(live, restored) {
		t.Fatalf("state restored from the changelog (%d keys) differs from the live one (%d keys)", len(restored), len(live))
	}
}
