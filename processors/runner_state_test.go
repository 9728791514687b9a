package processors

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// rig is an embedded log with 4 partitions, a producer of counter events
// and runners of counter processors (emitting to the outbound topic).
type rig struct {
	t      *testing.T
	ctx    context.Context
	l      *eventlog.Log
	topics schemas.Topics
	prod   *kgo.Client
	sent   atomic.Int64
}

func newRig(t *testing.T) *rig {
	l := logtest.Open(t, 4)
	prod, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	return &rig{t: t, ctx: context.Background(), l: l, topics: l.Topics(), prod: prod}
}

// send produces n events spread over 20 things.
func (g *rig) send(n int) {
	g.t.Helper()
	var recs []*kgo.Record
	for range n {
		i := g.sent.Add(1)
		recs = append(recs, countRecord(fmt.Sprintf("thing-%d", i%20), 0, "ok"))
	}
	if err := g.prod.ProduceSync(g.ctx, recs...).FirstErr(); err != nil {
		g.t.Fatal(err)
	}
}

// node is one Runner over a state directory.
type node struct {
	r    *Runner
	stop context.CancelFunc
	done chan error
}

func (g *rig) start(dir string, procs ...Processor) *node {
	g.t.Helper()
	if len(procs) == 0 {
		procs = []Processor{counter{"c1", g.topics.Outbound}}
	}
	r, err := NewRunner(g.l, procs, RunnerOptions{Topics: g.topics, StateDir: dir, Logger: logtest.Quiet(), TickInterval: 50 * time.Millisecond})
	if err != nil {
		g.t.Fatal(err)
	}
	ctx, stop := context.WithCancel(g.ctx)
	n := &node{r: r, stop: stop, done: make(chan error, 1)}
	go func() { n.done <- r.Run(ctx) }()
	return n
}

func (n *node) close(t *testing.T) {
	t.Helper()
	n.stop()
	if err := <-n.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := n.r.Close(); err != nil {
		t.Fatal(err)
	}
}

// outputs reads the committed counter outputs: "thing:n" -> times seen.
func (g *rig) outputs() map[string]int {
	g.t.Helper()
	out := map[string]int{}
	err := eventlog.ReadToEnd(g.ctx, g.l.Client, g.topics.Outbound, func(r *kgo.Record) error {
		out[string(r.Value)]++
		return nil
	})
	if err != nil {
		g.t.Fatal(err)
	}
	return out
}

// waitOutputs waits until the committed outputs number n, and checks
// each was committed once.
func (g *rig) waitOutputs(n int) map[string]int {
	g.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := g.outputs()
		total := 0
		for k, c := range out {
			if c > 1 {
				g.t.Fatalf("output %s committed %d times", k, c)
			}
			total += c
		}
		if total == n {
			return out
		}
		if total > n || time.Now().After(deadline) {
			g.t.Fatalf("%d outputs committed, want %d", total, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkCounts checks that the outputs are, per thing, 1..count with no
// gap or repeat: each event counted once.
func checkCounts(t *testing.T, out map[string]int, total int) {
	t.Helper()
	per := map[string]int{}
	for k := range out {
		var thing string
		var n int
		fmt.Sscanf(k, "%s", &thing)
		i := len(k) - 1
		for k[i] != ':' {
			i--
		}
		thing = k[:i]
		fmt.Sscanf(k[i+1:], "%d", &n)
		per[thing] = max(per[thing], n)
	}
	sum := 0
	for thing, n := range per {
		for i := 1; i <= n; i++ {
			if out[fmt.Sprintf("%s:%d", thing, i)] != 1 {
				t.Fatalf("%s: output %d seen %d times", thing, i, out[fmt.Sprintf("%s:%d", thing, i)])
			}
		}
		sum += n
	}
	if sum != total {
		t.Fatalf("counts sum to %d, want %d", sum, total)
	}
}

// A node with no state (a lost disk, a new machine) after the events
// topic lost its records (retention) gets the state back from the
// changelog, key for key, emits nothing again for events already
// handled, and counts new events on from there.
func TestRunnerRestoresStateWithoutRepeatingOutputs(t *testing.T) {
	g := newRig(t)
	g.send(400)
	dir := t.TempDir()
	a := g.start(dir)
	g.waitOutputs(400)
	a.close(t)
	before, err := DumpState(dir, "c1")
	if err != nil {
		t.Fatal(err)
	}
	// Retention: the events topic loses everything so far.
	adm := kadm.NewClient(g.prod)
	ends, err := adm.ListEndOffsets(g.ctx, g.topics.Events)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.DeleteRecords(g.ctx, ends.Offsets()); err != nil {
		t.Fatal(err)
	}
	fresh := t.TempDir()
	b := g.start(fresh)
	// Nothing new is emitted: give the node time to (wrongly) do so.
	time.Sleep(1500 * time.Millisecond)
	g.waitOutputs(400)
	b.close(t)
	after, err := DumpState(fresh, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(before, after) || len(after) != 20 {
		t.Fatalf("restored state (%d keys) differs from the state before (%d keys)", len(after), len(before))
	}
	g.send(100)
	c := g.start(fresh)
	out := g.waitOutputs(500)
	c.close(t)
	checkCounts(t, out, 500)
}

// A partition that was processed elsewhere while a node was away is not
// resumed from the node's stale local state: it is restored from the
// changelog, so no event is applied twice and no output repeats.
func TestRunnerRestoresStaleLocalState(t *testing.T) {
	g := newRig(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	g.send(200)
	a := g.start(dirA)
	g.waitOutputs(200)
	a.close(t)
	g.send(200)
	b := g.start(dirB)
	g.waitOutputs(400)
	b.close(t)
	g.send(100)
	a = g.start(dirA)
	out := g.waitOutputs(500)
	time.Sleep(500 * time.Millisecond)
	out = g.waitOutputs(500)
	a.close(t)
	checkCounts(t, out, 500)
}

// failOnce emits, for the first event it sees whose count is a multiple
// of 7, a record too large to produce: the batch's transaction fails
// and aborts, and the task starts again from its state.
type failOnce struct {
	counter
	armed *atomic.Bool
}

func (f failOnce) Process(ctx context.Context, tx *Tx, ev *Event) error {
	if err := f.counter.Process(ctx, tx, ev); err != nil {
		return err
	}
	if n, _ := f.count(tx, ev.Thing); n%7 == 0 && f.armed.CompareAndSwap(true, false) {
		tx.Emit(&kgo.Record{Topic: f.topic, Value: make([]byte, 4<<20)})
	}
	return nil
}

// A produce failure aborts the batch: none of its records is seen by a
// read-committed consumer, its state does not commit, and the task
// applies the same events again, once.
func TestRunnerProduceFailureAbortsTheBatch(t *testing.T) {
	g := newRig(t)
	armed := &atomic.Bool{}
	armed.Store(true)
	g.send(300)
	n := g.start(t.TempDir(), failOnce{counter{"c1", g.topics.Outbound}, armed})
	out := g.waitOutputs(300)
	if armed.Load() {
		t.Fatal("the failure was never injected")
	}
	if got := testCounter(n.r.metrics.aborts); got < 1 {
		t.Fatalf("%v aborted batches, want at least 1", got)
	}
	n.close(t)
	checkCounts(t, out, 300)
}

// Partitions move between two nodes while events keep coming (a node
// joins, then the first leaves): every event is counted once and every
// output committed once.
func TestRunnerRebalanceUnderLoad(t *testing.T) {
	g := newRig(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			g.send(20)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	a := g.start(t.TempDir())
	time.Sleep(time.Second)
	b := g.start(t.TempDir())
	time.Sleep(2 * time.Second)
	a.close(t)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	out := g.waitOutputs(int(g.sent.Load()))
	b.close(t)
	checkCounts(t, out, int(g.sent.Load()))
}

func testCounter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
