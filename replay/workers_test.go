package replay

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// replayAll runs evs through set with opts and returns every output and
// the summary.
func replayAll(t *testing.T, set string, opts Options, evs []*Event) ([]Output, Summary) {
	t.Helper()
	ctx := context.Background()
	var outs []Output
	eng, err := NewEngine(compileRules(t, set), opts, func(o Output) error { outs = append(outs, o); return nil })
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if err := eng.Add(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := eng.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return outs, eng.Summary()
}

// The partitions' workers change nothing: the same outputs (rule, line,
// source, thing, event, time) in the same order, and the same summary,
// with one worker as with several, an odd count, or one per partition.
func TestWorkersGiveTheSameOutputs(t *testing.T) {
	// 150 s of 400 devices on 8 partitions: event outputs, and a window
	// closing twice (ticks).
	evs := eventsEvery(30_000, 400, 8, 5*time.Millisecond)
	const set = benchRules
	want, wantSum := replayAll(t, set, Options{Partitions: 8, Workers: 1}, evs)
	ticks := 0
	for _, o := range want {
		if o.Event == nil {
			ticks++
		}
	}
	if ticks == 0 || ticks == len(want) {
		t.Fatalf("%d outputs, %d of ticks: the history must give both", len(want), ticks)
	}
	for _, workers := range []int{2, 3, 8} {
		t.Run(fmt.Sprint(workers, " workers"), func(t *testing.T) {
			got, sum := replayAll(t, set, Options{Partitions: 8, Workers: workers}, evs)
			if len(got) != len(want) {
				t.Fatalf("%d outputs, want %d", len(got), len(want))
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Fatalf("output %d: %s from %s, want %s from %s", i, got[i].Line, got[i].Source, want[i].Line, want[i].Source)
				}
			}
			if !reflect.DeepEqual(sum, wantSum) {
				t.Errorf("summary %+v, want %+v", sum, wantSum)
			}
		})
	}
}

// A diff compares what both versions emitted up to the same point, while
// each runs at its own pace, even when only one of them ticks: the
// rule both have in common shows no change, the window only the old one
// has shows all its rows removed.
func TestDiffOneSideTicks(t *testing.T) {
	ctx := context.Background()
	evs := eventsEvery(30_000, 400, 8, 5*time.Millisecond)
	const plain = `CREATE RULE e AS SELECT upper(status) AS s FROM 'fleet/+/telemetry' WHERE startswith(status, 'err')`
	const window = `CREATE RULE w AS SELECT count(*) AS n FROM 'fleet/+/telemetry' GROUP BY TUMBLE(10 SECONDS), topic(2)`
	for range 3 {
		d, err := NewDiffer(compileRules(t, plain+";\n"+window), compileRules(t, plain), Options{Partitions: 8}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			if err := d.Add(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		diffs, err := d.Close(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if e := diffs[0]; e.Rule != "e" || e.Differs() || e.Old != 30 || e.New != 30 {
			t.Errorf("the common rule: %+v, want 30 outputs on both sides and no change", e)
		}
		if w := diffs[1]; w.Rule != "w" || w.Old < 400*13 || w.Removed != w.Old || w.Added+w.Changed+w.New != 0 {
			t.Errorf("the window: %+v, want every row (at least 400 things x 13 windows) removed", w)
		}
	}
}

// A replay whose context ends stops with the context's error: a later
// Add returns it, Close returns it and stops the workers.
func TestEngineStopsWhenCanceled(t *testing.T) {
	evs := eventsEvery(40_000, 400, 8, 5*time.Millisecond)
	eng, err := NewEngine(compileRules(t, benchRules), Options{Partitions: 8, Workers: 2}, func(Output) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var addErr error
	for i, ev := range evs {
		if i == 10_000 {
			cancel()
		}
		if addErr = eng.Add(ctx, ev); addErr != nil {
			break
		}
	}
	if !errors.Is(addErr, context.Canceled) {
		t.Errorf("Add after the cancel: %v, want context.Canceled", addErr)
	}
	if err := eng.Add(context.Background(), evs[len(evs)-1]); !errors.Is(err, context.Canceled) {
		t.Errorf("Add after a failure: %v, want the failure", err)
	}
	done := make(chan error, 1)
	go func() { done <- eng.Close(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Close: %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Close did not return")
	}
}
