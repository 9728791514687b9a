package rules

import (
	"bytes"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// mergeRule has aggregates over the same arguments, fed alike or not:
// groups count(*) | avg, max, min of temp | count(temp) | count(hum) |
// the percentiles of temp | sum(hum).
const mergeRule = `CREATE RULE stats AS SELECT topic(2) AS dev, count(*) AS n, avg(temp) AS mean, max(temp) AS hi, min( temp ) AS lo,
count(temp) AS nt, count(hum) AS nh, percentile(temp, 50) AS p50, percentile(temp, 90) AS p90, sum(hum) AS sh
FROM 'sensors/+/data' GROUP BY TUMBLE(INTERVAL 1 MINUTE), topic(2) THEN kafka(topic => 's')`

// orphaned are the aggregates of mergeRule merged into another's group.
var orphaned = []string{"a2\x00", "a3\x00", "a7\x00"}

func TestGroupAggregates(t *testing.T) {
	r := compileSet(t, mergeRule).Rules[0]
	want := [][]int{{0}, {1, 2, 3}, {4}, {5}, {6, 7}, {8}}
	if got := groupAggregates(r, false); !reflect.DeepEqual(got, want) {
		t.Errorf("groups %v, want %v", got, want)
	}
	r = compileSet(t, `SELECT avg(abs(t)) AS a, max(abs(t)) AS b, count(*) AS c, count(*) AS d FROM 'x' GROUP BY TUMBLE(INTERVAL 1 MINUTE)`).Rules[0]
	if got, want := groupAggregates(r, false), [][]int{{0}, {1}, {2, 3}}; !reflect.DeepEqual(got, want) {
		t.Errorf("groups %v, want %v", got, want)
	}
}

// Aggregates over the same argument share one aggregator and its state:
// the rule emits what one aggregator per aggregate emits, and state
// written by separate aggregators (before the merge) goes on in the
// merged ones, the merged-away aggregators' state emptied.
func TestMergedAggregatesAsSeparate(t *testing.T) {
	batches := memoEvents(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	newRun := func(separate bool) *rig {
		g := newRig(t, mergeRule, Options{})
		g.r.p.separateAggregates = separate
		return g
	}
	run := func(g *rig, from, to int) []string { return g.batches(batches[from:to]) }
	separate := run(newRun(true), 0, len(batches))
	mergedRig := newRun(false)
	merged := run(mergedRig, 0, len(batches))
	if len(separate) < 20 || !slices.Equal(merged, separate) {
		t.Fatalf("merged aggregators emitted %d records, separate ones %d (or they differ)", len(merged), len(separate))
	}
	mergedState, err := mergedRig.h.Snapshot(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{10, 25} {
		old := newRun(true)
		head := run(old, 0, cut)
		var cl []*kgo.Record
		for _, r := range old.h.Changelog(0) {
			cl = append(cl, &kgo.Record{Key: r.Key, Value: r.Value})
		}
		if orphans(old) == 0 {
			t.Fatalf("cut %d: separate aggregators wrote nothing to merge", cut)
		}
		g := newRun(false)
		if err := g.h.Restore(0, cl); err != nil {
			t.Fatal(err)
		}
		tail := run(g, cut, cut+1)
		if n := orphans(g); n != 0 {
			t.Fatalf("cut %d: %d keys of merged-away aggregators left", cut, n)
		}
		tail = append(tail, run(g, cut+1, len(batches))...)
		if !slices.Equal(append(head, tail...), separate) {
			t.Fatalf("cut %d: the merged aggregators went on differently", cut)
		}
		state, err := g.h.Snapshot(0)
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(state, mergedState) {
			t.Fatalf("cut %d: state differs from the merged run's", cut)
		}
	}
}

// orphans counts the state keys of mergeRule's merged-away aggregates.
func orphans(g *rig) int {
	snap, err := g.h.Snapshot(0)
	if err != nil {
		g.t.Fatal(err)
	}
	n := 0
	for k := range snap {
		if kind, sub := ruleStateKey([]byte(k)); kind == 'w' {
			for _, o := range orphaned {
				if bytes.HasPrefix(sub, []byte(o)) {
					n++
				}
			}
		}
	}
	return n
}
