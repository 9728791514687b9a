package webhook

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
)

// Issue 20, "effects are never repeated": a webhook the executor has
// delivered is not POSTed again after a crash and a restart, after its
// partition moves to another executor, or when the same action record
// appears twice in the log. Only a firing in flight at the crash (sent,
// its answer not yet recorded) may reach the target again.

// allOnce fails for every key not accepted exactly once.
func allOnce(t *testing.T, rv *receiver, acts []schemas.Action) {
	t.Helper()
	for _, a := range acts {
		if n := rv.count(a.Key); n != 1 {
			t.Errorf("key %s accepted %d times, want 1", a.Key, n)
		}
	}
}

func TestExecutorCrashRepeatsOnlyInFlight(t *testing.T) {
	const n = 40
	b := newBroker(t, 1)
	hs := newHangServer(t)
	srv := httptest.NewServer(hs)
	defer srv.Close()
	defer hs.stopHanging()
	// Offsets 0 and 5 hang: nothing after them is committable in log order.
	var acts []schemas.Action
	for i := range n {
		url := srv.URL + "/ok"
		if i == 0 || i == 5 {
			url = srv.URL + "/hang"
		}
		acts = append(acts, action(i, url))
	}
	b.produce(t, 1, acts...)
	o := testOptions(b, nil)
	o.RequestTimeout = time.Minute
	o.CommitInterval = time.Hour
	e := startExecutor(t, o)
	waitFor(t, "38 firings delivered", func() bool { u, _, _ := hs.rv.stats(); return u == n-2 })
	waitFor(t, "2 firings hanging", func() bool { return hs.heldNow() == 2 })
	// The target counts a firing before the executor records it done.
	waitFor(t, "38 firings recorded done", func() bool { return len(e.slots) == 2 })
	if err := e.commit(context.Background()); err != nil { // what the periodic commit does
		t.Fatal(err)
	}
	e.crash()
	// Let the target see the cut requests go before it answers again.
	waitFor(t, "the cut requests gone at the target", func() bool { return hs.heldNow() == 0 })
	hs.stopHanging()
	o.CommitInterval = 20 * time.Millisecond
	startExecutor(t, o)
	waitFor(t, "every firing delivered", func() bool { u, _, _ := hs.rv.stats(); return u == n })
	waitFor(t, "all committed", func() bool { return b.committed(t, 0) == n })
	allOnce(t, hs.rv, acts)
	for _, i := range []int{0, 5} {
		if got := hs.arrived(acts[i].Key); got != 2 {
			t.Errorf("in-flight key %s reached the target %d times, want 2 (cut by the crash, then sent again)", acts[i].Key, got)
		}
	}
}

func TestExecutorMoveRepeatsNothing(t *testing.T) {
	const partitions, n = 4, 200
	b := newBroker(t, partitions)
	hs := newHangServer(t)
	srv := httptest.NewServer(hs)
	defer srv.Close()
	hangSrv := httptest.NewServer(hs) // another host, so the hang is not what holds the others back
	defer hangSrv.Close()
	defer hs.stopHanging()
	// The first two firings of every partition hang.
	var acts []schemas.Action
	for i := range n {
		url := srv.URL + "/ok"
		if i < 2*partitions {
			url = hangSrv.URL + "/hang"
		}
		acts = append(acts, action(i, url))
	}
	b.produce(t, partitions, acts...)
	o := testOptions(b, nil)
	o.RequestTimeout = time.Minute
	o.TargetConcurrency = 2 * partitions // every hanging firing in flight
	e1 := startExecutor(t, o)
	waitFor(t, "the first executor delivered every other firing", func() bool { u, _, _ := hs.rv.stats(); return u == n-2*partitions })
	waitFor(t, "8 firings hanging", func() bool { return hs.heldNow() == 2*partitions })

	// A second member joins (half the partitions move), then the first
	// stops (the rest move).
	e2 := startExecutor(t, o)
	waitFor(t, "partitions split between the two", func() bool { return owned(e1) == partitions/2 && owned(e2) == partitions/2 })
	if err := e1.stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the requests cut by the stop gone at the target", func() bool { return hs.heldNow() == 2*partitions/2 })
	waitFor(t, "the second executor owns every partition", func() bool { return owned(e2) == partitions })
	hs.stopHanging()
	waitFor(t, "every firing delivered", func() bool { u, _, _ := hs.rv.stats(); return u == n })
	for p := range int32(partitions) {
		waitFor(t, fmt.Sprintf("partition %d committed to its end", p), func() bool { return b.committed(t, p) == n/partitions })
	}
	allOnce(t, hs.rv, acts)
}

func TestExecutorDropsDuplicateRecords(t *testing.T) {
	b := newBroker(t, 1)
	hs := newHangServer(t)
	srv := httptest.NewServer(hs)
	defer srv.Close()
	defer hs.stopHanging()
	held := action(0, srv.URL+"/hang")
	var acts []schemas.Action
	for i := 1; i < 10; i++ {
		acts = append(acts, action(i, srv.URL+"/ok"))
	}
	// Offset 0 hangs; offsets 1-9 are delivered; offset 10 repeats the
	// key in flight at offset 0; then offset 11 a key already delivered.
	b.produce(t, 1, append(append([]schemas.Action{held}, acts...), held)...)
	o := testOptions(b, nil)
	o.RequestTimeout = time.Minute
	e := startExecutor(t, o)
	waitFor(t, "9 firings delivered", func() bool { u, _, _ := hs.rv.stats(); return u == 9 })
	waitFor(t, "the record repeating a key in flight skipped", func() bool {
		return counterValue(e.metrics.skipped.WithLabelValues("duplicate")) == 1
	})
	b.produce(t, 1, acts[0])
	waitFor(t, "the record repeating a delivered key skipped", func() bool {
		return counterValue(e.metrics.skipped.WithLabelValues("executed")) == 1
	})
	// Under load the held request may still be on its way: wait for it,
	// then it must stay the only one.
	waitFor(t, "the key in flight at the target", func() bool { return hs.arrived(held.Key) >= 1 })
	if got := hs.arrived(held.Key); got != 1 {
		t.Errorf("the key in flight reached the target %d times, want 1", got)
	}
	hs.stopHanging()
	waitFor(t, "the held firing delivered", func() bool { return hs.rv.count(held.Key) == 1 })
	waitFor(t, "all committed", func() bool { return b.committed(t, 0) == 12 })
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}

	// After a restart, a key delivered before it arrives again (below the
	// resume offset), then a new one.
	fresh := action(100, srv.URL+"/ok")
	b.produce(t, 1, acts[1], fresh)
	e = startExecutor(t, o)
	waitFor(t, "the new firing delivered", func() bool { return hs.rv.count(fresh.Key) == 1 })
	if got := counterValue(e.metrics.skipped.WithLabelValues("executed")); got != 1 {
		t.Errorf("skipped{executed} = %v after the restart, want 1", got)
	}
	allOnce(t, hs.rv, append(acts, held, fresh))
}

// The processors produce actions in transactions: the executor reads
// committed records only (an aborted firing never leaves the system),
// moves past the offsets of control records, and resumes after them.
func TestExecutorReadsCommittedActions(t *testing.T) {
	b := newBroker(t, 1)
	rv := newReceiver(t, nil)
	srv := httptest.NewServer(rv)
	defer srv.Close()
	var acts []schemas.Action
	for i := range 6 {
		acts = append(acts, action(i, srv.URL))
	}
	b.produceInTransaction(t, true, acts[0], acts[1])
	b.produceInTransaction(t, false, acts[2])
	b.produce(t, 1, acts[3])
	b.produceInTransaction(t, true, acts[4], acts[5])
	ends, err := b.adm.ListEndOffsets(context.Background(), topics.Actions)
	if err != nil {
		t.Fatal(err)
	}
	end, _ := ends.Lookup(topics.Actions, 0)

	o := testOptions(b, nil)
	e := startExecutor(t, o)
	delivered := append(append([]schemas.Action{}, acts[:2]...), acts[3:]...)
	waitFor(t, "the committed firings delivered", func() bool { u, _, _ := rv.stats(); return u == len(delivered) })
	// Past the last record (the offset before the final commit marker).
	waitFor(t, "committed past the last record", func() bool { return b.committed(t, 0) == end.Offset-1 })
	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	fresh := action(6, srv.URL)
	b.produce(t, 1, fresh)
	startExecutor(t, o)
	waitFor(t, "a new firing after the restart", func() bool { return rv.count(fresh.Key) == 1 })
	allOnce(t, rv, append(delivered, fresh))
	if n := rv.count(acts[2].Key); n != 0 {
		t.Errorf("the aborted firing was delivered %d times", n)
	}
}
