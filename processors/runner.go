package processors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
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

	mu      sync.Mutex
	tasks   map[int32]*task
	workers map[int32]*worker
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
	return &Runner{opts: opts, procs: procs, db: db, factory: factory, metrics: newRunnerMetrics(), tasks: map[int32]*task{}, workers: map[int32]*worker{}}, nil
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

// Run consumes until ctx ends (then it returns nil) or a partition's
// state fails (then it returns that failure).
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
	parent := ctx
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	cl, err := r.factory.Client(
		kgo.ConsumerGroup(o.Group),
		kgo.ConsumeTopics(o.Topics.Events),
		kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(100*time.Millisecond),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.AdjustFetchOffsetsFn(r.adjustOffsets),
		kgo.RecordPartitioner(r.partitioner()),
		kgo.OnPartitionsAssigned(func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
			r.assign(ctx, cancel, cl, m[o.Topics.Events])
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
	// Workers produce through cl: they stop before it closes.
	defer r.stopAll()
	o.Logger.Info("processors running", "group", o.Group, "topic", o.Topics.Events, "state", o.StateDir, "processors", len(r.procs))
	lastCommit := time.Now()
	for {
		fs := cl.PollRecords(ctx, 10000)
		if ctx.Err() != nil {
			if parent.Err() != nil {
				return nil
			}
			return context.Cause(ctx) // a worker's state failure
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
		// Offsets in Kafka are informational (lag tools); the state's
		// offsets are the truth.
		if time.Since(lastCommit) >= time.Second {
			cl.CommitUncommittedOffsets(ctx)
			lastCommit = time.Now()
		}
	}
}

// worker applies one partition's records and runs its ticks.
type worker struct {
	t  *task
	cl *kgo.Client
	// queue holds fetched records of the partition, in log order;
	// paused is set while the partition's fetching is paused because
	// the queue is full. Both under mu.
	mu     sync.Mutex
	queue  []kgo.FetchTopicPartition
	paused bool
	// wake tells the worker the queue grew.
	wake chan struct{}
	// stop asks the worker to return; done is closed when it has.
	stop, done chan struct{}
}

// A worker's queue pauses its partition's fetching at queueHigh polls
// and resumes it at queueLow, so a partition with a backlog never holds
// back the poll loop (and the other partitions), and memory stays
// bounded.
const (
	queueHigh = 4
	queueLow  = 1
)

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

// next takes the oldest queued fetch, resuming the partition's fetching
// when the queue has drained enough.
func (w *worker) next(cl *kgo.Client) (kgo.FetchTopicPartition, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		return kgo.FetchTopicPartition{}, false
	}
	fp := w.queue[0]
	w.queue[0] = kgo.FetchTopicPartition{}
	w.queue = w.queue[1:]
	if w.paused && len(w.queue) <= queueLow {
		w.paused = false
		cl.ResumeFetchPartitions(map[string][]int32{fp.Topic: {fp.Partition}})
	}
	return fp, true
}

// work is a partition's worker loop: queued fetches, ticks between
// them. A state failure cancels the run.
func (r *Runner) work(ctx context.Context, fail context.CancelCauseFunc, cl *kgo.Client, w *worker) {
	defer close(w.done)
	if err := r.restore(ctx, w.t); err != nil {
		if ctx.Err() == nil {
			fail(err)
		}
		return
	}
	ticker := time.NewTicker(r.opts.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		var err error
		select {
		case <-ticker.C:
			err = r.tick(ctx, cl, w.t)
		default:
			if fp, ok := w.next(cl); ok {
				err = r.processPartition(ctx, cl, w.t, fp.Records)
				last := fp.Records[len(fp.Records)-1].Offset
				r.metrics.lag.WithLabelValues(itoa(fp.Partition)).Set(float64(fp.HighWatermark - last - 1))
				break
			}
			select {
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			case <-ticker.C:
				err = r.tick(ctx, cl, w.t)
			case <-w.wake:
			}
		}
		if err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			return
		}
	}
}

// restore restores t's partition from the processors' changelogs when
// its state is empty (see Restorer).
func (r *Runner) restore(ctx context.Context, t *task) error {
	next, err := readOffset(r.db, t.partition)
	if err != nil || next >= 0 {
		return err
	}
	start := time.Now()
	bt := t.newBatch()
	read := func(ctx context.Context, topic string, fn func(*kgo.Record) error) error {
		n, err := r.partitionCount(ctx, topic)
		if err != nil {
			return err
		}
		var keep func(int32) bool // all: the topic has fewer partitions (see changelogPartitioner)
		if t.partition < n {
			keep = func(q int32) bool { return q == t.partition }
		}
		return eventlog.ReadPartitionsToEnd(ctx, r.factory.Client, topic, keep, fn)
	}
	n, err := t.restore(ctx, bt, read)
	if err != nil {
		t.abort(bt)
		return err
	}
	if err := t.commit(bt); err != nil {
		return err
	}
	if n > 0 {
		r.opts.Logger.Info("partition state restored from changelogs", "partition", t.partition, "entries", n, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// partitioner is the partitioner of what the processors emit.
func (r *Runner) partitioner() kgo.Partitioner {
	p := changelogPartitioner{changelogs: map[string]bool{}, def: kgo.StickyKeyPartitioner(nil)}
	for _, proc := range r.procs {
		if rs, ok := proc.(Restorer); ok {
			p.changelogs[rs.Changelog()] = true
		}
	}
	return p
}

// partitionCount returns how many partitions topic has.
func (r *Runner) partitionCount(ctx context.Context, topic string) (int32, error) {
	cl, err := r.factory.Client()
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	var n int32
	ends.Each(func(o kadm.ListedOffset) { n = max(n, o.Partition+1) })
	return n, nil
}

// changelogPartitioner sends the records of changelog topics to the
// partition set on them (Tx.Emit sets the events partition), so that a
// partition's changelog is one partition of the topic; when the topic
// has fewer partitions, and for every other topic, it hashes the key as
// franz-go's default does.
type changelogPartitioner struct {
	changelogs map[string]bool
	def        kgo.Partitioner
}

func (p changelogPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	def := p.def.ForTopic(topic)
	if !p.changelogs[topic] {
		return def
	}
	return changelogTopic{def}
}

type changelogTopic struct{ def kgo.TopicPartitioner }

func (c changelogTopic) RequiresConsistency(*kgo.Record) bool { return true }

func (c changelogTopic) Partition(r *kgo.Record, n int) int {
	if int(r.Partition) < n && r.Partition >= 0 {
		return int(r.Partition)
	}
	return c.def.Partition(r, n)
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

// assign starts a worker for each newly assigned partition (its task is
// created the first time).
func (r *Runner) assign(ctx context.Context, fail context.CancelCauseFunc, cl *kgo.Client, ps []int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range ps {
		if _, ok := r.workers[p]; ok {
			continue
		}
		t, ok := r.tasks[p]
		if !ok {
			t = r.newTask(p)
			r.tasks[p] = t
		}
		w := &worker{t: t, cl: cl, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
		r.workers[p] = w
		go r.work(ctx, fail, cl, w)
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

// revoke stops the workers of ps and waits for them (a worker finishes
// the batch it is in: committed, or abandoned), then drops their tasks
// (a partition assigned again starts from its state with a fresh
// memo).
func (r *Runner) revoke(ps []int32) {
	r.mu.Lock()
	var stopped []*worker
	for _, p := range ps {
		if w, ok := r.workers[p]; ok {
			close(w.stop)
			stopped = append(stopped, w)
			delete(r.workers, p)
		}
		delete(r.tasks, p)
	}
	r.mu.Unlock()
	for _, w := range stopped {
		<-w.done
		// A partition assigned again must not stay paused. (dispatch
		// queues nothing once stop is closed.)
		w.mu.Lock()
		if w.paused {
			w.paused = false
			w.cl.ResumeFetchPartitions(map[string][]int32{r.opts.Topics.Events: {w.t.partition}})
		}
		w.mu.Unlock()
	}
}

// processPartition applies recs as one batch. The records the
// processors emit are produced while the batch goes on (every
// sendEvery records), so producing overlaps processing; the batch's
// state and offset commit only once every one of them is acknowledged,
// and not at all if one fails.
func (r *Runner) processPartition(ctx context.Context, cl *kgo.Client, t *task, recs []*kgo.Record) error {
	bt := t.newBatch()
	var out outputs
	sent := 0
	for i, rec := range recs {
		if err := t.apply(ctx, bt, rec); err != nil {
			out.wait()
			t.abort(bt)
			return err
		}
		if i%sendEvery == sendEvery-1 {
			out.produce(ctx, cl, bt.out[sent:])
			sent = len(bt.out)
		}
	}
	r.metrics.events.Add(float64(len(recs)))
	return r.finish(ctx, cl, t, bt, &out, sent)
}

// sendEvery is how many events a batch applies between two sends of
// what they emitted.
const sendEvery = 256

// outputs tracks the records a batch produces: how many are in flight
// and the first failure.
type outputs struct {
	wg    sync.WaitGroup
	mu    sync.Mutex
	first error
}

// produce sends recs without waiting for them.
func (o *outputs) produce(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) {
	o.wg.Add(len(recs))
	for _, rec := range recs {
		cl.Produce(ctx, rec, o.done)
	}
}

func (o *outputs) done(_ *kgo.Record, err error) {
	if err != nil {
		o.mu.Lock()
		if o.first == nil {
			o.first = err
		}
		o.mu.Unlock()
	}
	o.wg.Done()
}

// wait waits for every record sent and returns the first failure.
func (o *outputs) wait() error {
	o.wg.Wait()
	return o.first
}

// finish produces a batch's records from bt.out[sent:] (out holds the
// ones sent before), waits until every one is acknowledged, then
// commits the batch's state and offset; a failed record abandons the
// batch.
func (r *Runner) finish(ctx context.Context, cl *kgo.Client, t *task, bt *batch, out *outputs, sent int) error {
	out.produce(ctx, cl, bt.out[sent:])
	if err := out.wait(); err != nil {
		t.abort(bt)
		return fmt.Errorf("produce outputs of partition %d: %w", t.partition, err)
	}
	r.metrics.emitted.Add(float64(len(bt.out)))
	return t.commit(bt)
}

// tick runs the Ticker processors of t's partition and commits what
// they did.
func (r *Runner) tick(ctx context.Context, cl *kgo.Client, t *task) error {
	bt := t.newBatch()
	if err := t.tick(ctx, bt); err != nil {
		t.abort(bt)
		return err
	}
	return r.finish(ctx, cl, t, bt, new(outputs), 0)
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
