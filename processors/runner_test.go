package processors

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// gate holds every event of partition 0 until open is closed, and counts
// the events it saw per partition.
type gate struct {
	open chan struct{}
	seen [2]atomic.Int64
}

func (*gate) Name() string { return "gate" }
func (g *gate) Process(ctx context.Context, _ *Tx, ev *Event) error {
	if ev.Partition == 0 {
		select {
		case <-g.open:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	g.seen[ev.Partition].Add(1)
	return nil
}

// A partition that is busy (here: stuck on its first event) holds no
// other partition back: partition 1's events keep being applied, poll
// after poll, while partition 0 has not finished its batch; what arrives
// for partition 0 meanwhile is applied, all of it, once it moves again.
func TestRunnerPartitionsProgressIndependently(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := logtest.Quiet()
	l := logtest.Open(t, 2)
	topics := l.Topics()
	prod, err := l.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	send := func(partition int32, n int) {
		t.Helper()
		env := schemas.Envelope{Type: schemas.EventPublish, Topic: "t"}
		for range n {
			r := &kgo.Record{Topic: topics.Events, Partition: partition, Key: []byte("thing"), Value: []byte(`{}`), Headers: env.Headers()}
			if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitSeen := func(g *gate, partition int32, n int64) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); g.seen[partition].Load() < n; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("partition %d: %d events applied, want %d", partition, g.seen[partition].Load(), n)
			}
		}
	}

	g := &gate{open: make(chan struct{})}
	r, err := NewRunner(l, []Processor{g}, RunnerOptions{Topics: topics, StateDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	send(0, 1)
	send(1, 5)
	waitSeen(g, 1, 5)
	// A later poll: with partition 0 still in its batch.
	send(1, 5)
	waitSeen(g, 1, 10)
	if n := g.seen[0].Load(); n != 0 {
		t.Fatalf("partition 0 applied %d events while held", n)
	}
	// More for the held partition, a poll or more each: its queue fills,
	// its fetching pauses, and resumes as it drains; nothing is lost.
	for range 10 {
		send(0, 5)
		time.Sleep(30 * time.Millisecond)
	}
	close(g.open)
	waitSeen(g, 0, 51)
	send(1, 1)
	waitSeen(g, 1, 11)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// At a low rate a partition's events are gathered into batches (each a
// transaction) of about fetchMaxWait's worth, not one batch per produce:
// 200 events produced one at a time over 1 partition take at most about
// one batch per fetchMaxWait, plus one.
func TestRunnerGathersEventsAtLowRates(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := logtest.Open(t, 1)
	topics := l.Topics()
	prod, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	c := &gate{open: make(chan struct{})}
	close(c.open)
	r, err := NewRunner(l, []Processor{c}, RunnerOptions{Topics: topics, StateDir: t.TempDir(), Logger: logtest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for deadline := time.Now().Add(30 * time.Second); !r.Ready(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("partitions not assigned")
		}
	}
	env := schemas.Envelope{Type: schemas.EventPublish, Topic: "t"}
	const n = 200
	start := time.Now()
	for range n {
		r := &kgo.Record{Topic: topics.Events, Key: []byte("thing"), Value: []byte(`{}`), Headers: env.Headers()}
		if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	for deadline := time.Now().Add(30 * time.Second); c.seen[0].Load() < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events applied", c.seen[0].Load(), n)
		}
	}
	took := time.Since(start)
	var m dto.Metric
	if err := r.metrics.batches.Write(&m); err != nil {
		t.Fatal(err)
	}
	batches := int(m.GetCounter().GetValue())
	if most := int(took/fetchMaxWait) + 2; batches > most {
		t.Errorf("%d events in %d batches over %v, want at most %d (one per %v)", n, batches, took.Round(time.Millisecond), most, fetchMaxWait)
	}
	t.Logf("%d events in %d batches over %v", n, batches, took.Round(time.Millisecond))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
