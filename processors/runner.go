package processors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/iotpipe/iotpipe/internal/diskspace"
	"github.com/iotpipe/iotpipe/internal/eventlog"
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
	// Topics are the log's topic names (default schemas.DefaultTopics()):
	// the runner reads Input and writes Changelog and DLQ.
	Topics schemas.Topics
	// Input is the topic the runner consumes (default Topics.Events).
	// Records of the events topic are decoded as events (their envelope);
	// those of any other topic (the action executors read
	// Topics.Actions) reach processors as they are, in Event.Headers.
	Input string
	// Group is the consumer group (default "iotpipe-processors"). Every
	// `iotpipe process` instance of one deployment uses the same group.
	// It also names the partitions' transactional ids
	// ("<group>/<events topic>/<partition>").
	Group string
	// StateDir is the Pebble directory (default ./data/state).
	StateDir string
	// TickInterval is how often Ticker processors run (default 1s).
	TickInterval time.Duration
	// TransactionTimeout is how long the log keeps a batch's transaction
	// open before aborting it (default 1m): the longest a crashed node
	// can hold up readers of what it was writing, when no other node
	// takes its partitions over first.
	TransactionTimeout time.Duration
	// FreshStart, when set, says where a partition that never had state
	// (no local state, nothing in the changelog) starts: ok false means
	// the start of the input. (The action executors use it to take over
	// from the consumer groups of earlier versions.)
	FreshStart func(ctx context.Context, partition int32) (offset int64, ok bool)
	// Clock is the processors' clock (default time.Now).
	Clock func() time.Time
	// BeforeCommit, when set, is called with a batch's emitted records
	// once they are all acknowledged, before its transaction commits;
	// AfterCommit once the transaction committed, before the Pebble
	// batch does. Tests use them to crash the process at those points.
	BeforeCommit, AfterCommit func(partition int32, emitted []*kgo.Record)
	// Logger receives logs (default slog.Default()).
	Logger *slog.Logger
}

func (o *RunnerOptions) defaults() {
	def := schemas.DefaultTopics()
	if o.Topics.Events == "" {
		o.Topics.Events = def.Events
	}
	if o.Topics.Changelog == "" {
		o.Topics.Changelog = def.Changelog
	}
	if o.Topics.DLQ == "" {
		o.Topics.DLQ = def.DLQ
	}
	if o.Input == "" {
		o.Input = o.Topics.Events
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
	if o.TransactionTimeout <= 0 {
		o.TransactionTimeout = time.Minute
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Runner runs processors over the events topic: a consumer group, one
// task per assigned partition, state in Pebble and in the changelog
// topic.
//
// Guarantee: each batch of a partition is one Kafka transaction holding
// what the processors emitted, the state it changed (the changelog) and
// the next offset; the Pebble batch with the same state and offset
// commits after it. A partition is started (on assignment, and again
// after a failed batch) only once its local state is current with the
// changelog: restored from it when the local state is missing or behind
// (a lost disk, a new node, a partition processed elsewhere meanwhile, a
// crash between the two commits). So state is exactly once, events are
// never applied twice (nothing they caused is emitted twice), and
// read-committed consumers see every emitted record exactly once.
// Starting a partition fences its earlier owner: a node that lost it can
// no longer commit for it.
type Runner struct {
	opts    RunnerOptions
	procs   []Processor
	db      *pebble.DB
	factory ClientFactory
	metrics *runnerMetrics
	// space watches the state store's disk: no batch starts while it
	// has less than minFreeState free.
	space *diskspace.Watch

	// partitions is the events topic's partition count, read at Run.
	partitions int

	mu      sync.Mutex
	workers map[int32]*worker
	// consumer is the group client (set when partitions are assigned).
	consumer *kgo.Client
	// assigned is set once the group's first assignment is in place
	// (every assigned partition started, or none assigned).
	assigned atomic.Bool
}

// Ready reports whether the runner has joined its group and started the
// partitions it was assigned (a node that is ready answers for them).
func (r *Runner) Ready() bool { return r.assigned.Load() }

// NewRunner opens the state store; Run starts consuming.
func NewRunner(factory ClientFactory, procs []Processor, opts RunnerOptions) (*Runner, error) {
	opts.defaults()
	seen := map[string]bool{"": true}
	for _, p := range procs {
		if seen[p.Name()] {
			return nil, fmt.Errorf("processors: two processors named %q (names namespace the state)", p.Name())
		}
		seen[p.Name()] = true
	}
	if err := os.MkdirAll(opts.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", opts.StateDir, err)
	}
	db, err := pebble.Open(opts.StateDir, &pebble.Options{})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", opts.StateDir, err)
	}
	return &Runner{opts: opts, procs: procs, db: db, factory: factory, metrics: newRunnerMetrics(), workers: map[int32]*worker{},
		space: &diskspace.Watch{Dir: opts.StateDir, Min: minFreeState, Every: 10 * time.Millisecond}}, nil
}

// minFreeState is the free space the state store's disk must have for a
// batch to start. Pebble ends the process when a write to its WAL or
// MANIFEST fails, so the runner stops writing state before the disk is
// full: a batch that would start with less aborts like a store failure
// (the partition retries with its backoff, up to 10s) and goes on by
// itself once there is room. The disk is read at most every 10ms (a
// statfs costs about 3µs).
const minFreeState = 16 << 20

// Close closes the state store. Call it after Run returned.
func (r *Runner) Close() error { return r.db.Close() }

// Collectors returns the runner's Prometheus collectors.
func (r *Runner) Collectors() []prometheus.Collector { return r.metrics.collectors() }

// Read returns the value of key in processor's state, looking through
// the partitions this runner processes now (committed state only): state
// kept of a partition that moved to another node is not served, as it
// may be stale.
func (r *Runner) Read(processor string, key []byte) ([]byte, bool, error) {
	r.mu.Lock()
	ps := make([]int32, 0, len(r.workers))
	for p, w := range r.workers {
		if w.done != nil {
			ps = append(ps, p)
		}
	}
	r.mu.Unlock()
	return readPartitions(r.db, ps, processor, key)
}

// Run consumes until ctx ends (then it returns nil) or the consumer
// fails.
//
// Each assigned partition has its own worker goroutine that applies the
// partition's records batch after batch and runs its ticks; the poll
// loop only hands fetched records to the workers, so partitions
// progress independently (a partition with a backlog does not hold the
// others back) and in parallel. A worker's queue holds a few polls; when
// it is full the partition's fetching pauses until it drains, which
// bounds memory without stopping the other partitions.
func (r *Runner) Run(ctx context.Context) error {
	o := r.opts
	n, err := eventlog.PartitionCount(ctx, r.factory.Client, o.Input)
	if err != nil {
		return err
	}
	r.partitions = int(n)
	cl, err := r.factory.Client(
		kgo.ConsumerGroup(o.Group),
		kgo.ConsumeTopics(o.Input),
		kgo.DisableAutoCommit(),
		kgo.FetchMinBytes(fetchMinBytes),
		kgo.FetchMaxWait(fetchMaxWait),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.OnPartitionsAssigned(func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
			r.mu.Lock()
			r.consumer = cl
			r.mu.Unlock()
			if len(m[o.Input]) == 0 {
				r.assigned.Store(true) // nothing to start
			}
		}),
		kgo.AdjustFetchOffsetsFn(func(actx context.Context, m map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
			return r.assign(ctx, actx, m)
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			r.revoke(m[o.Input])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			r.revoke(m[o.Input])
		}),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	// Workers produce with clients of their own; they stop before the
	// consumer closes.
	defer r.stopAll()
	o.Logger.Info("processors running", "group", o.Group, "topic", o.Input, "changelog", o.Topics.Changelog, "state", o.StateDir, "processors", len(r.procs))
	lastCommit := time.Now()
	for {
		fs := cl.PollRecords(ctx, 10000)
		if ctx.Err() != nil {
			return nil
		}
		if fs.IsClientClosed() {
			return errors.New("processors: consumer closed")
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				o.Logger.Warn("fetch", "topic", topic, "partition", p, "err", err)
			}
		})
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) > 0 {
				r.dispatch(cl, fp)
			}
		})
		// Offsets in Kafka are informational (lag tools): the state's
		// offsets are the truth.
		if time.Since(lastCommit) >= time.Second {
			r.commitOffsets(ctx, cl)
			lastCommit = time.Now()
		}
	}
}

// A fetch waits up to fetchMaxWait for fetchMinBytes to gather, so a
// partition is fetched, and its batch (one transaction) committed, about
// 50 times a second at most until 50 MB/s: returning with each
// produce's few records cost the log a fetch and a transaction per
// produce at low rates (1.3 events per batch at 5k events/s). An event
// waits at most fetchMaxWait more.
const (
	fetchMinBytes = 1 << 20
	fetchMaxWait  = 20 * time.Millisecond
)

// commitOffsets commits the next offset of every partition's state to
// the consumer group, for lag tools.
func (r *Runner) commitOffsets(ctx context.Context, cl *kgo.Client) {
	offs := map[int32]kgo.EpochOffset{}
	r.mu.Lock()
	for p, w := range r.workers {
		if n := w.next.Load(); n >= 0 {
			offs[p] = kgo.EpochOffset{Epoch: -1, Offset: n}
		}
	}
	r.mu.Unlock()
	if len(offs) > 0 {
		cl.CommitOffsets(ctx, map[string]map[int32]kgo.EpochOffset{r.opts.Input: offs}, nil)
	}
}

// dispatch queues fetched records for their partition's worker, pausing
// the partition's fetching when the queue is full. Records of a
// partition with no worker (it was revoked meanwhile) are dropped:
// whoever owns it next resumes from its state's offset.
func (r *Runner) dispatch(cl *kgo.Client, fp kgo.FetchTopicPartition) {
	r.mu.Lock()
	w := r.workers[fp.Partition]
	r.mu.Unlock()
	if w == nil {
		return
	}
	w.mu.Lock()
	select {
	case <-w.stop: // revoked: see revoke
		w.mu.Unlock()
		return
	default:
	}
	w.queue = append(w.queue, fp)
	if len(w.queue) >= queueHigh && !w.paused {
		w.paused = true
		cl.PauseFetchPartitions(map[string][]int32{fp.Topic: {fp.Partition}})
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// assign starts a worker for each newly assigned partition of m, once
// its state is current with the changelog (restored if needed), and
// starts consuming it at the state's next offset. It runs as the
// group's offset adjustment, so no record of a partition is fetched
// before its state is ready. actx ends when the group session begins
// revoking; workers run under runCtx.
func (r *Runner) assign(runCtx, actx context.Context, m map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	ps := m[r.opts.Input]
	type ready struct {
		p   int32
		w   *worker
		err error
	}
	results := make(chan ready, len(ps))
	var started int
	for p := range ps {
		r.mu.Lock()
		w := r.workers[p]
		r.mu.Unlock()
		if w != nil {
			ps[p] = nextOffset(w.t.next)
			continue
		}
		started++
		go func(p int32) {
			w, err := r.startPartition(actx, p)
			results <- ready{p, w, err}
		}(p)
	}
	var firstErr error
	var fresh []int32
	for range started {
		res := <-results
		if res.err != nil {
			if firstErr == nil {
				firstErr = res.err
			}
			continue
		}
		fresh = append(fresh, res.p)
		ps[res.p] = nextOffset(res.w.t.next)
		r.opts.Logger.Info("partition assigned", "topic", r.opts.Input, "partition", res.p, "resume_at", res.w.t.next)
	}
	if firstErr == nil && runCtx.Err() != nil {
		firstErr = runCtx.Err() // Run is ending: start nothing
	}
	if firstErr != nil {
		// Stop what was prepared here: the group session rejoins and
		// assigns again.
		r.revoke(fresh)
		return nil, firstErr
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for p := range ps {
		w := r.workers[p]
		if w != nil && w.done == nil {
			w.done = make(chan struct{})
			go w.work(runCtx)
		}
	}
	r.assigned.Store(true)
	return m, nil
}

func nextOffset(next int64) kgo.Offset {
	if next < 0 {
		return kgo.NewOffset().AtStart()
	}
	return kgo.NewOffset().At(next).WithEpoch(-1)
}

// startPartition makes partition p's worker, with its producer (which
// fences earlier owners) and its state current with the changelog, and
// registers it (not yet running). It retries failures until ctx ends.
func (r *Runner) startPartition(ctx context.Context, p int32) (*worker, error) {
	t := r.newTask(p)
	backoff := 200 * time.Millisecond
	for {
		prod, err := r.newProducer(p)
		if err == nil {
			err = r.prepare(ctx, t, prod)
			if err != nil {
				prod.Close()
			}
		}
		if err == nil {
			w := &worker{r: r, t: t, prod: prod, wake: make(chan struct{}, 1), stop: make(chan struct{}), ops: make(chan *holdOp)}
			r.mu.Lock()
			w.cl = r.consumer
			r.workers[p] = w
			r.mu.Unlock()
			w.next.Store(t.next)
			return w, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("start partition %d: %w", p, err)
		}
		r.opts.Logger.Warn("starting partition failed; retrying", "partition", p, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("start partition %d: %w", p, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// newProducer returns partition p's transactional producer: its id is
// the partition's, so a new owner fences the old one.
func (r *Runner) newProducer(p int32) (*kgo.Client, error) {
	return r.factory.Client(
		kgo.TransactionalID(TransactionalID(r.opts.Group, r.opts.Input, p)),
		kgo.TransactionTimeout(r.opts.TransactionTimeout),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(changelogPartitioner{r.opts.Topics.Changelog, kgo.StickyKeyPartitioner(nil)}),
		kgo.ProducerLinger(0),
		kgo.MaxBufferedRecords(1<<17),
	)
}

// prepare fences the partition's earlier owners (their open transactions
// are aborted) and makes t's state current with the changelog.
func (r *Runner) prepare(ctx context.Context, t *task, prod *kgo.Client) error {
	if _, _, err := prod.ProducerID(ctx); err != nil {
		return fmt.Errorf("transactional producer of partition %d: %w", t.partition, err)
	}
	if _, err := r.prepareState(ctx, t, prod); err != nil {
		return err
	}
	if t.next < 0 && r.opts.FreshStart != nil {
		if off, ok := r.opts.FreshStart(ctx, t.partition); ok {
			t.next = off
			r.opts.Logger.Info("partition starts where an earlier version left it", "partition", t.partition, "offset", off)
		}
	}
	return nil
}

// changelogPartitioner sends changelog records to the partition set on
// them (the events partition whose state they hold); every other topic
// is partitioned by key, as franz-go's default does.
type changelogPartitioner struct {
	changelog string
	def       kgo.Partitioner
}

func (p changelogPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if topic != p.changelog {
		return p.def.ForTopic(topic)
	}
	return manualTopic{}
}

type manualTopic struct{}

func (manualTopic) RequiresConsistency(*kgo.Record) bool { return true }
func (manualTopic) Partition(r *kgo.Record, n int) int {
	if int(r.Partition) >= n || r.Partition < 0 {
		return -1 // the produce fails: a changelog needs the events' partitions
	}
	return int(r.Partition)
}

// stopAll stops every worker and waits for them.
func (r *Runner) stopAll() {
	r.mu.Lock()
	ps := make([]int32, 0, len(r.workers))
	for p := range r.workers {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	r.revoke(ps)
}

// newTask returns partition p's task, counting and logging what its
// processors send to the DLQ.
func (r *Runner) newTask(p int32) *task {
	t := newTask(r.db, p, r.procs, r.opts.Clock, false, r.opts.Topics.DLQ, r.partitions)
	t.raw = r.opts.Input != r.opts.Topics.Events
	t.onError = func(proc string, err error) {
		r.metrics.taskErrors.WithLabelValues(proc).Inc()
		r.opts.Logger.Warn("event to dlq", "processor", proc, "partition", p, "err", err)
	}
	return t
}

// revoke stops the workers of ps and waits for them (a worker finishes
// the batch it is in: committed, or abandoned), then forgets them (a
// partition assigned again starts with a fresh task and memo, its state
// checked against the changelog).
func (r *Runner) revoke(ps []int32) {
	r.mu.Lock()
	var stopped []*worker
	for _, p := range ps {
		if w, ok := r.workers[p]; ok {
			close(w.stop)
			stopped = append(stopped, w)
			delete(r.workers, p)
		}
	}
	r.mu.Unlock()
	for _, w := range stopped {
		if w.done != nil {
			<-w.done
		} else {
			w.prod.Close() // prepared, never started
		}
		// A partition assigned again must not stay paused. (dispatch
		// queues nothing once stop is closed.)
		w.mu.Lock()
		if w.paused && w.cl != nil {
			w.paused = false
			w.cl.ResumeFetchPartitions(map[string][]int32{r.opts.Input: {w.t.partition}})
		}
		w.mu.Unlock()
	}
}

func itoa(p int32) string { return string(appendInt(nil, int64(p))) }

type runnerMetrics struct {
	events     prometheus.Counter
	batches    prometheus.Counter
	emitted    prometheus.Counter
	taskErrors *prometheus.CounterVec
	lag        *prometheus.GaugeVec
	restores   prometheus.Counter
	aborts     prometheus.Counter
	lost       prometheus.Counter
}

func newRunnerMetrics() *runnerMetrics {
	return &runnerMetrics{
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotpipe_processor_events_total", Help: "Events applied by the partition tasks.",
		}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotpipe_processor_batches_total", Help: "Batches of events committed (each one transaction and one state write).",
		}),
		emitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotpipe_processor_emitted_total", Help: "Records emitted by processors (committed).",
		}),
		taskErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_processor_errors_total", Help: "Events a processor failed on (sent to the DLQ), by processor.",
		}, []string{"processor"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "iotpipe_processor_lag", Help: "Records behind the high watermark, per events partition.",
		}, []string{"partition"}),
		restores: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotpipe_processor_restores_total", Help: "Partitions whose state was restored from the changelog.",
		}),
		aborts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotpipe_processor_aborted_batches_total", Help: "Batches aborted by a store or produce failure (the task started again from its state).",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotpipe_processor_retention_lost_total", Help: "Events removed by the log's retention before any processor applied them.",
		}),
	}
}

func (m *runnerMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.events, m.batches, m.emitted, m.taskErrors, m.lag, m.restores, m.aborts, m.lost}
}
