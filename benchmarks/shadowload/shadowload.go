// Package shadowload measures device shadow updates per second through
// iotpipe's processor runtime as `iotpipe process` runs it: an embedded
// event log (kfake over TCP) holds the updates before the clock starts,
// and a processors.Runner with the shadow processor consumes them in its
// consumer group, keeps the shadows in Pebble on disk and produces every
// accepted, delta, documents and changelog record back to the log before
// each commit. The clock stops when the changelog holds one record per
// update (every generated update is valid, so every one is accepted).
//
// Records generates the traffic (also used by the processor's Go
// benchmarks); Run drives one measurement; Command is the front end of
// `iotpipe bench shadows`.
package shadowload

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"time"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Records returns n shadow update requests (100–300 bytes each) as
// records of the events topic, over things things: devices reporting
// telemetry-like state (7 leaves), and every tenth request an app setting
// desired state (4 leaves). Offsets are 0..n-1; seed picks the things and
// values (the same seed gives the same records; things of different seeds
// differ).
func Records(n, things int, seed uint64, topic string) []*kgo.Record {
	rng := rand.New(rand.NewPCG(seed, 2))
	colors := []string{"red", "green", "blue"}
	recs := make([]*kgo.Record, n)
	for i := range recs {
		thing := fmt.Sprintf("device-%d-%05d", seed, rng.IntN(things))
		var payload string
		if i%10 == 9 {
			payload = fmt.Sprintf(`{"state":{"desired":{"led":{"color":"%s","brightness":%d},"mode":"eco","interval":%d}},"clientToken":"app-%d"}`,
				colors[rng.IntN(3)], rng.IntN(100), 10+rng.IntN(50), i)
		} else {
			payload = fmt.Sprintf(`{"state":{"reported":{"temp":%.2f,"humidity":%d,"battery":%d,"led":{"color":"%s","brightness":%d},"fw":"1.4.%d","online":true}},"clientToken":"dev-%d"}`,
				15+rng.Float64()*20, rng.IntN(100), rng.IntN(100), colors[rng.IntN(3)], rng.IntN(100), rng.IntN(9), i)
		}
		env := schemas.Envelope{Type: schemas.EventPublish, Topic: "$aws/things/" + thing + "/shadow/update", ClientID: thing, QoS: 1, ReceivedAt: 1767225600000000000}
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(thing), Value: []byte(payload), Headers: env.Headers(), Offset: int64(i)}
	}
	return recs
}

// Options configure Run. Zero fields take the defaults.
type Options struct {
	// Updates is how many updates to apply (default 200,000).
	Updates int
	// Things is the fleet size (default 1,000).
	Things int
	// Partitions of the events topic, processed in parallel (default 2).
	Partitions int32
	// Dir holds the log and the state (default a temporary directory,
	// removed at the end).
	Dir string
	// Progress, when set, receives a line per second while the clock
	// runs.
	Progress io.Writer
	// OnStart and OnStop, when set, are called as the clock starts and
	// stops (Go benchmarks time only that part).
	OnStart, OnStop func()
}

// Result is one measurement.
type Result struct {
	Updates    int
	Things     int
	Partitions int32
	// Elapsed is the time from the runner's start to the last changelog
	// record.
	Elapsed time.Duration
}

// Rate is the updates per second.
func (r Result) Rate() float64 { return float64(r.Updates) / r.Elapsed.Seconds() }

// String describes the result in one line.
func (r Result) String() string {
	return fmt.Sprintf("%d shadow updates in %s: %.0f updates/s (%d things, %d partitions; log and processors in one process)",
		r.Updates, r.Elapsed.Round(time.Millisecond), r.Rate(), r.Things, r.Partitions)
}

// Run loads the updates into a fresh embedded log and measures the
// runtime applying them.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Updates <= 0 {
		o.Updates = 200_000
	}
	if o.Things <= 0 {
		o.Things = 1000
	}
	if o.Partitions <= 0 {
		o.Partitions = 2
	}
	res := Result{Updates: o.Updates, Things: o.Things, Partitions: o.Partitions}
	dir := o.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "iotpipe-bench-shadows-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	l, err := eventlog.Open(ctx, eventlog.Options{DataDir: dir + "/kafka", Port: -1, Partitions: o.Partitions, Logger: quiet})
	if err != nil {
		return res, fmt.Errorf("start the embedded log: %w", err)
	}
	defer l.Close()
	if err := l.EnsureTopics(ctx); err != nil {
		return res, err
	}
	topics := l.Topics()
	prod, err := l.Client(kgo.ProducerLinger(5 * time.Millisecond))
	if err != nil {
		return res, err
	}
	defer prod.Close()
	log := Records(min(o.Updates, 1<<15), o.Things, 1, topics.Events)
	for i := 0; i < o.Updates; {
		batch := make([]*kgo.Record, 0, 5000)
		for ; i < o.Updates && len(batch) < cap(batch); i++ {
			r := log[i%len(log)]
			batch = append(batch, &kgo.Record{Topic: topics.Events, Key: r.Key, Value: r.Value, Headers: r.Headers})
		}
		if err := prod.ProduceSync(ctx, batch...).FirstErr(); err != nil {
			return res, fmt.Errorf("load the updates: %w", err)
		}
	}
	r, err := processors.NewRunner(l, []processors.Processor{shadow.New(shadow.Options{Topics: topics})},
		processors.RunnerOptions{Topics: topics, StateDir: dir + "/state", Logger: quiet})
	if err != nil {
		return res, err
	}
	defer r.Close()
	adm := kadm.NewClient(prod)
	if o.OnStart != nil {
		o.OnStart()
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	last := start
	for {
		ends, err := adm.ListEndOffsets(ctx, topics.Shadows)
		if err != nil {
			return res, err
		}
		var n int64
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		if n >= int64(o.Updates) {
			break
		}
		if o.Progress != nil && time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Fprintf(o.Progress, "%8.1fs %9d of %d applied\n", time.Since(start).Seconds(), n, o.Updates)
		}
		select {
		case err := <-done:
			return res, fmt.Errorf("the runner stopped: %v", err)
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	res.Elapsed = time.Since(start)
	if o.OnStop != nil {
		o.OnStop()
	}
	cancel()
	<-done
	return res, nil
}
