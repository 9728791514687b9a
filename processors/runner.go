package processors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ClientFactory makes franz-go clients for the log (eventlog.Log does).
type ClientFactory interface {
	Client(opts ...kgo.Opt) (*kgo.Client, error)
}

// RunnerOptions configures a Runner.
type RunnerOptions struct {
	// Topics are the log's topic names (default schemas.DefaultTopics()).
	Topics schemas.Topics
	// Group is the consumer group (default "iotpipe-processors"). Every
	// `iotpipe process` instance of one deployment uses the same group.
	Group string
	// StateDir is the Pebble directory (default ./data/state).
	StateDir string
	// TickInterval is how often Ticker processors run (default 1s).
	TickInterval time.Duration
	// Clock is the processors' clock (default time.Now).
	Clock func() time.Time
	// Logger receives logs (default slog.Default()).
	Logger *slog.Logger
}

func (o *RunnerOptions) defaults() {
	if o.Topics.Events == "" {
		o.Topics = schemas.DefaultTopics()
	}
	if o.Group == "" {
		o.Group = "iotpipe-processors"
	}
	if o.StateDir == "" {
		o.StateDir = "data/state"
	}
	if o.TickInterval <= 0 {
		o.TickInterval = time.Second
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Runner runs processors over the events topic: a consumer group, one
// task per assigned partition, state in Pebble.
//
// Guarantee: a partition's state and its next offset are committed in
// one Pebble batch, so state is exactly-once: after a crash the task
// resumes at the offset its state was written with, and no event is
// applied twice. Emitted records are produced (and acknowledged) before
// that batch commits, so none is lost; a crash between the two makes the
// restarted task emit them again with the same iot.src header
// ("<partition>/<offset>/<processor>/<seq>"): at-least-once with
// deterministic ids, which downstream consumers use to drop duplicates.
type Runner struct {
	opts    RunnerOptions
	procs   []Processor
	db      *pebble.DB
	factory ClientFactory
	metrics *runnerMetrics

	mu    sync.Mutex
	tasks map[int32]*task
}

// NewRunner opens the state store; Run starts consuming.
func NewRunner(factory ClientFactory, procs []Processor, opts RunnerOptions) (*Runner, error) {
	opts.defaults()
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", opts.StateDir, err)
	}
	db, err := pebble.Open(opts.StateDir, &pebble.Options{})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", opts.StateDir, err)
	}
	return &Runner{opts: opts, procs: procs, db: db, factory: factory, metrics: newRunnerMetrics(), tasks: map[int32]*task{}}, nil
}

// Close closes the state store. Call it after Run returned.
func (r *Runner) Close() error { return r.db.Close() }

// Collectors returns the runner's Prometheus collectors.
func (r *Runner) Collectors() []prometheus.Collector { return r.metrics.collectors() }

// Read returns the value of key in processor's state, looking through
// every partition this runner holds state for (committed state only).
func (r *Runner) Read(processor string, key []byte) ([]byte, bool, error) {
	return readAnyPartition(r.db, processor, key)
}

// Run consumes until ctx ends or a state failure.
func (r *Runner) Run(ctx context.Context) error {
	o := r.opts
	cl, err := r.factory.Client(
		kgo.ConsumerGroup(o.Group),
		kgo.ConsumeTopics(o.Topics.Events),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.AdjustFetchOffsetsFn(r.adjustOffsets),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			r.assign(m[o.Topics.Events])
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			r.revoke(m[o.Topics.Events])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			r.revoke(m[o.Topics.Events])
		}),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	ticker := time.NewTicker(o.TickInterval)
	defer ticker.Stop()
	o.Logger.Info("processors running", "group", o.Group, "topic", o.Topics.Events, "state", o.StateDir, "processors", len(r.procs))
	for {
		pollCtx, cancel := context.WithTimeout(ctx, o.TickInterval)
		fs := cl.PollRecords(pollCtx, 10000)
		cancel()
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return nil
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				o.Logger.Warn("fetch", "topic", topic, "partition", p, "err", err)
			}
		})
		procErr := r.processFetches(ctx, cl, fs)
		if procErr != nil {
			cl.AllowRebalance()
			if ctx.Err() != nil {
				return nil
			}
			return procErr
		}
		select {
		case <-ticker.C:
			if err := r.tickAll(ctx, cl); err != nil {
				cl.AllowRebalance()
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		default:
		}
		// Offsets in Kafka are informational (lag tools); the state's
		// offsets are the truth.
		cl.CommitUncommittedOffsets(ctx)
		cl.AllowRebalance()
	}
}

// adjustOffsets starts each assigned partition at the offset its state
// was committed with, or at the log's start when there is no state (the
// state is rebuilt from the log).
func (r *Runner) adjustOffsets(_ context.Context, m map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for topic, ps := range m {
		for p := range ps {
			next, err := readOffset(r.db, p)
			if err != nil {
				return nil, err
			}
			if next < 0 {
				ps[p] = kgo.NewOffset().AtStart()
			} else {
				ps[p] = kgo.NewOffset().At(next)
			}
			r.opts.Logger.Info("partition assigned", "topic", topic, "partition", p, "resume_at", next)
		}
	}
	return m, nil
}

func (r *Runner) assign(ps []int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range ps {
		if _, ok := r.tasks[p]; !ok {
			r.tasks[p] = r.newTask(p)
		}
	}
}

// newTask returns partition p's task, counting and logging what its
// processors send to the DLQ.
func (r *Runner) newTask(p int32) *task {
	t := newTask(r.db, p, r.procs, r.opts.Clock, false, r.opts.Topics.DLQ)
	t.onError = func(proc string, err error) {
		r.metrics.taskErrors.WithLabelValues(proc).Inc()
		r.opts.Logger.Warn("event to dlq", "processor", proc, "partition", p, "err", err)
	}
	return t
}

func (r *Runner) revoke(ps []int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range ps {
		delete(r.tasks, p)
	}
}

func (r *Runner) task(p int32) *task {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.tasks[p]
	if !ok {
		t = r.newTask(p)
		r.tasks[p] = t
	}
	return t
}

// processFetches runs the fetched partitions' tasks in parallel (one
// goroutine per partition, at most GOMAXPROCS at once): tasks share no
// state, each commits its own batch. It returns the first failure.
func (r *Runner) processFetches(ctx context.Context, cl *kgo.Client, fs kgo.Fetches) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		slots = make(chan struct{}, runtime.GOMAXPROCS(0))
	)
	fs.EachPartition(func(fp kgo.FetchTopicPartition) {
		if len(fp.Records) == 0 {
			return
		}
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			err := r.processPartition(ctx, cl, fp.Partition, fp.Records)
			last := fp.Records[len(fp.Records)-1].Offset
			r.metrics.lag.WithLabelValues(itoa(fp.Partition)).Set(float64(fp.HighWatermark - last - 1))
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	})
	wg.Wait()
	return first
}

func (r *Runner) processPartition(ctx context.Context, cl *kgo.Client, p int32, recs []*kgo.Record) error {
	t := r.task(p)
	bt := t.newBatch()
	for _, rec := range recs {
		if err := t.apply(ctx, bt, rec); err != nil {
			t.abort(bt)
			return err
		}
	}
	r.metrics.events.Add(float64(len(recs)))
	return r.finish(ctx, cl, t, bt)
}

// finish produces a batch's records, then commits its state and offset.
func (r *Runner) finish(ctx context.Context, cl *kgo.Client, t *task, bt *batch) error {
	if len(bt.out) > 0 {
		if err := cl.ProduceSync(ctx, bt.out...).FirstErr(); err != nil {
			t.abort(bt)
			return fmt.Errorf("produce outputs of partition %d: %w", t.partition, err)
		}
		r.metrics.emitted.Add(float64(len(bt.out)))
	}
	return t.commit(bt)
}

func (r *Runner) tickAll(ctx context.Context, cl *kgo.Client) error {
	r.mu.Lock()
	tasks := make([]*task, 0, len(r.tasks))
	for _, t := range r.tasks {
		tasks = append(tasks, t)
	}
	r.mu.Unlock()
	for _, t := range tasks {
		bt := t.newBatch()
		if err := t.tick(ctx, bt); err != nil {
			t.abort(bt)
			return err
		}
		if err := r.finish(ctx, cl, t, bt); err != nil {
			return err
		}
	}
	return nil
}

func itoa(p int32) string { return string(appendInt(nil, int64(p))) }

type runnerMetrics struct {
	events     prometheus.Counter
	emitted    prometheus.Counter
	taskErrors *prometheus.CounterVec
	lag        *prometheus.GaugeVec
}

func newRunnerMetrics() *runnerMetrics {
	return &runnerMetrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotpipe_processor_events_total", Help: "Events applied by the partition tasks.",
		}),
		emitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotpipe_processor_emitted_total", Help: "Records emitted by processors.",
		}),
		taskErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_processor_errors_total", Help: "Events a processor failed on (sent to the DLQ), by processor.",
		}, []string{"processor"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "iotpipe_processor_lag", Help: "Records behind the high watermark, per events partition.",
		}, []string{"partition"}),
	}
}

func (m *runnerMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.events, m.emitted, m.taskErrors, m.lag}
}
