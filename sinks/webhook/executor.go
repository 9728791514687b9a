package webhook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/sinks/ledger"
)

// Executor delivers the webhook actions of the actions topic. Create it
// with New, register Collectors, then Run it once.
type Executor struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	deliver *deliverer

	slots    chan struct{} // one token per record in flight
	released chan struct{} // signalled when a token is returned
	work     chan *job     // attempts handed to idle workers
	quit     chan struct{} // closed when Run returns: workers exit

	ran      atomic.Bool
	killed   atomic.Bool
	commitMu sync.Mutex // one ledger write and commit at a time

	// Set by Run before the client exists, then read-only.
	ledger *ledger.Ledger
	cl     *kgo.Client

	mu           sync.Mutex
	attemptCtx   context.Context // parent of every partition's attempts
	stopAttempts context.CancelFunc
	cancelRun    context.CancelFunc
	parts        map[int32]*part
	hosts        map[string]*host
	busy         int           // attempts running, with what follows them (dead letter, ledger)
	idle         chan struct{} // closed when busy drops, for waitFor
	stopping     bool          // Run is draining: no attempt starts
}

// part is an assigned actions partition.
type part struct {
	id      int32
	l       *ledger.Partition
	ctx     context.Context // its attempts; canceled when it goes
	cancel  context.CancelFunc
	revoked bool // revoked or lost: its firings are left to the next owner
	busy    int
}

// job is one webhook firing on its way to a target.
type job struct {
	rec  *kgo.Record
	part *part
	req  *request // nil when the action is invalid (err)
	err  error
	u    *unit
	out  outcome
	read time.Time
}

// New checks opts and returns an Executor that is not yet running.
func New(opts Options) (*Executor, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	e := &Executor{
		opts:     o,
		log:      o.Logger.With("component", "webhook"),
		slots:    make(chan struct{}, o.MaxInFlight),
		released: make(chan struct{}, 1),
		work:     make(chan *job),
		quit:     make(chan struct{}),
		parts:    map[int32]*part{},
		hosts:    map[string]*host{},
	}
	e.metrics = newMetrics(func() float64 { return float64(len(e.slots)) })
	e.deliver = newDeliverer(o.HTTPClient, o.policy(), e.metrics)
	return e, nil
}

// Collectors returns the executor's Prometheus collectors for the caller to
// register: iotpipe_webhook_delivered_total, _retries_total,
// _dead_lettered_total, _skipped_total, _request_duration_seconds,
// _delivery_latency_seconds, _queued_records and _in_flight_records.
func (e *Executor) Collectors() []prometheus.Collector { return e.metrics.collectors() }

// Run joins the consumer group and delivers until ctx ends, then drains:
// it stops reading, gives the requests in flight up to DrainTimeout to
// finish (it cuts the rest: they are sent again by the next owner), writes
// the ledger of what was done, commits the group offsets and leaves the
// group. Firings queued or waiting for their next attempt are left to the
// next owner. Run returns an error when the log cannot be reached at
// start or the ledger cannot be written at the end. It may be called
// once.
func (e *Executor) Run(ctx context.Context) error {
	if !e.ran.CompareAndSwap(false, true) {
		return errors.New("webhook executor: Run called twice")
	}
	defer close(e.quit)
	led, err := ledger.Open(e.opts.Clients, ledger.Options{
		Group: e.opts.Group, Topics: e.opts.Topics, Recent: e.opts.RecentKeys, Key: effectKey, Logger: e.log,
	})
	if err != nil {
		return fmt.Errorf("webhook executor: %w", err)
	}
	defer led.Close()
	e.ledger = led
	attemptCtx, stopAttempts := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAttempts()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	e.mu.Lock()
	e.attemptCtx, e.stopAttempts, e.cancelRun = attemptCtx, stopAttempts, cancel
	e.mu.Unlock()

	cl, err := e.opts.Clients.Client(append([]kgo.Opt{
		kgo.ConsumerGroup(e.opts.Group),
		kgo.ConsumeTopics(e.opts.Topics.Actions),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.AdjustFetchOffsetsFn(e.assign),
		kgo.OnPartitionsRevoked(e.onRevoked),
		kgo.OnPartitionsLost(e.onLost),
	}, e.opts.KafkaOptions...)...)
	if err != nil {
		return fmt.Errorf("webhook executor: %w", err)
	}
	e.cl = cl
	if err := cl.Ping(runCtx); err != nil {
		cl.Close()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("webhook executor: reach the log: %w", err)
	}
	e.log.Info("webhook executor running", "topic", e.opts.Topics.Actions, "group", e.opts.Group, "ledger", e.opts.Topics.Executed,
		"dlq", e.opts.Topics.DLQ, "signed", len(e.opts.Secret) > 0)
	committer := make(chan struct{})
	go func() {
		defer close(committer)
		e.commitLoop(runCtx)
	}()
	e.poll(runCtx)
	cancel()
	<-committer
	return e.drain(ctx)
}

// kill stops Run like a crash: requests in flight are cut, nothing more
// is written to the ledger or committed. Tests use it.
func (e *Executor) kill() {
	e.killed.Store(true)
	e.mu.Lock()
	stop, cancel := e.stopAttempts, e.cancelRun
	e.mu.Unlock()
	if cancel != nil {
		stop()
		cancel()
	}
}

// drain ends Run: see Run.
func (e *Executor) drain(ctx context.Context) error {
	e.mu.Lock()
	e.stopping = true
	e.purge(func(*job) bool { return true })
	e.mu.Unlock()
	idle := func() bool { return e.busy == 0 }
	if e.killed.Load() {
		e.waitFor(context.Background(), idle)
		e.cl.Close()
		return nil
	}
	var err error
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.opts.DrainTimeout)
	defer cancel()
	if !e.waitFor(dctx, idle) {
		e.mu.Lock()
		n := e.busy
		e.mu.Unlock()
		e.log.Warn("requests still in flight at the end of the drain were cut; the next owner sends them again", "requests", n, "drain_timeout", e.opts.DrainTimeout)
		e.stopAttempts()
		e.waitFor(context.Background(), idle)
	}
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer ccancel()
	if cerr := e.commit(cctx); cerr != nil {
		err = errors.Join(err, fmt.Errorf("webhook executor: final ledger write: %w", cerr))
	}
	e.cl.Close() // leaves the group (onRevoked finds nothing more to write)
	e.log.Info("webhook executor stopped")
	return err
}

// waitFor waits until cond (called with e.mu held) holds after a change
// of busy, or ctx ends (then it returns false).
func (e *Executor) waitFor(ctx context.Context, cond func() bool) bool {
	for {
		e.mu.Lock()
		if cond() {
			e.mu.Unlock()
			return true
		}
		if e.idle == nil {
			e.idle = make(chan struct{})
		}
		idle := e.idle
		e.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return false
		}
	}
}

// doneBusy ends a job's busy time. e.mu held.
func (e *Executor) doneBusy(j *job) {
	j.part.busy--
	e.busy--
	if e.idle != nil {
		close(e.idle)
		e.idle = nil
	}
}

// poll reads records while there is room in flight and hands them out.
func (e *Executor) poll(ctx context.Context) {
	for {
		free := cap(e.slots) - len(e.slots)
		if free == 0 {
			select {
			case <-e.released:
				continue
			case <-ctx.Done():
				return
			}
		}
		fetches := e.cl.PollRecords(ctx, free)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			e.cl.AllowRebalance()
			return
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			e.log.Warn("fetch error", "topic", topic, "partition", partition, "err", err)
		})
		// Register while rebalancing is blocked, so every record belongs to
		// a partition we own; revocations after this drop its jobs.
		var jobs []*job
		for _, r := range fetches.Records() {
			if j := e.admit(r); j != nil {
				jobs = append(jobs, j)
			}
		}
		e.cl.AllowRebalance()
		for _, j := range jobs {
			if !e.dispatch(ctx, j) {
				return
			}
		}
	}
}

// admit registers a record in its partition's ledger and returns its job,
// or nil when there is nothing to deliver (done already, not a webhook).
func (e *Executor) admit(r *kgo.Record) *job {
	e.mu.Lock()
	pt := e.parts[r.Partition]
	e.mu.Unlock()
	if pt == nil {
		e.log.Warn("record of a partition not assigned; skipped", "partition", r.Partition, "offset", r.Offset)
		return nil
	}
	pass := func(reason string) *job {
		if pt.l.Read(r.Offset, "") == ledger.Run {
			pt.l.Done(r.Offset)
		}
		e.metrics.skipped.WithLabelValues(reason).Inc()
		return nil
	}
	a, err := decodeAction(r.Value)
	if err != nil {
		e.log.Warn("skipping undecodable action record", "partition", r.Partition, "offset", r.Offset, "err", err)
		return pass("undecodable")
	}
	if a.Type != actionType {
		return pass("other_type")
	}
	switch st := pt.l.Read(r.Offset, a.idempotencyKey(r.Key)); st {
	case ledger.Executed, ledger.Duplicate:
		e.metrics.skipped.WithLabelValues(st.String()).Inc()
		return nil
	}
	req, err := newRequest(&a, r.Key, e.opts.Secret)
	e.slots <- struct{}{} // room: PollRecords returned at most the free slots
	return &job{rec: r, part: pt, req: req, err: err, read: time.Now()}
}

// effectKey is the ledger key of an actions record: the idempotency key
// of a webhook action, "" for anything else.
func effectKey(r *kgo.Record) string {
	a, err := decodeAction(r.Value)
	if err != nil || a.Type != actionType {
		return ""
	}
	return a.idempotencyKey(r.Key)
}

// releaseSlot returns a record's in-flight token.
func (e *Executor) releaseSlot() {
	<-e.slots
	select {
	case e.released <- struct{}{}:
	default:
	}
}

// dispatch queues a job on its target, waiting while the target's queue is
// full; an invalid action goes to the DLQ. It returns false when ctx
// ended.
func (e *Executor) dispatch(ctx context.Context, j *job) bool {
	if j.req == nil {
		if !e.deadLetter(ctx, j.rec, nil, outcome{kind: kindInvalid, err: j.err}, "invalid") {
			e.releaseSlot()
			return false
		}
		j.part.l.Done(j.rec.Offset)
		e.releaseSlot()
		return true
	}
	e.mu.Lock()
	for {
		if j.part.revoked {
			e.mu.Unlock()
			e.releaseSlot()
			return true
		}
		h := e.hostFor(j.req.target)
		if h.waiting < e.opts.TargetQueue {
			e.wait(h, 1)
			e.queue(j)
			e.pump(h)
			e.mu.Unlock()
			return true
		}
		if now := time.Now(); now.Sub(h.warned) > 10*time.Second {
			h.warned = now
			e.log.Warn("target queue full; reading paused until it has room", "target", h.name, "queue", e.opts.TargetQueue)
		}
		space := h.space
		e.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			e.releaseSlot()
			return false
		}
		e.mu.Lock()
	}
}

// attempt makes a job's next attempt, then finishes it or schedules the
// attempt after.
func (e *Executor) attempt(j *job) {
	wait, done := e.deliver.try(j.part.ctx, j.req, &j.out)
	e.mu.Lock()
	u := j.u
	u.active--
	u.h.active--
	retry := !done && !e.stopping && !j.part.revoked
	if retry {
		e.wait(u.h, 1)
		time.AfterFunc(wait, func() { e.retry(j) })
	}
	e.pump(u.h)
	e.mu.Unlock()
	switch {
	case done:
		e.finish(j)
	case !retry:
		e.releaseSlot() // left undone: the next owner sends it
	}
	e.mu.Lock()
	e.doneBusy(j)
	e.mu.Unlock()
}

// retry queues a job again once its wait is over.
func (e *Executor) retry(j *job) {
	e.mu.Lock()
	defer e.mu.Unlock()
	h := e.hostFor(j.req.target)
	if e.stopping || j.part.revoked {
		e.wait(h, -1)
		e.releaseSlot()
		return
	}
	e.queue(j)
	e.pump(h)
}

// finish records how a job's delivery ended: delivered, or dead-lettered
// (then it is done), or canceled (left undone).
func (e *Executor) finish(j *job) {
	defer e.releaseSlot()
	switch j.out.kind {
	case kindCanceled:
		return
	case kindDelivered:
		e.metrics.delivered.WithLabelValues(j.req.target).Inc()
		e.metrics.deliveryLatency.WithLabelValues(j.req.target).Observe(time.Since(j.read).Seconds())
	default:
		e.log.Warn("webhook not delivered; writing it to the DLQ", "target", j.req.target, "key", j.req.key, "reason", describe(j.out))
		if !e.deadLetter(j.part.ctx, j.rec, j.req, j.out, j.req.target) {
			return
		}
	}
	j.part.l.Done(j.rec.Offset)
}

// deadLetter writes a firing to the DLQ topic, retrying until Kafka
// acknowledges it or ctx ends (then it returns false and the firing stays
// undone).
func (e *Executor) deadLetter(ctx context.Context, r *kgo.Record, req *request, out outcome, label string) bool {
	for {
		rec := deadLetterRecord(e.opts.Topics.DLQ, r, req, out)
		err := e.cl.ProduceSync(ctx, rec).FirstErr()
		if err == nil {
			e.metrics.deadLettered.WithLabelValues(label, out.kind).Inc()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		e.log.Error("write to the DLQ topic failed; retrying", "topic", e.opts.Topics.DLQ, "err", err)
		if sleepCtx(ctx, time.Second) != nil {
			return false
		}
	}
}
