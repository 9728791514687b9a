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
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Executor delivers the webhook actions of the actions topic. Create it
// with New, register Collectors, then Start and Stop it once.
type Executor struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	deliver *deliverer
	offsets *offsets

	slots    chan struct{} // one token per record in flight
	released chan struct{} // signalled when a token is returned
	targets  map[string]*target

	commitMu sync.Mutex // serialises commits (periodic, revoke, final)
	killed   atomic.Bool

	mu      sync.Mutex
	cl      *kgo.Client
	cancel  context.CancelFunc
	workers sync.WaitGroup // poll loop and target workers
	commitC chan struct{}  // closed when the commit loop exits
	stopped bool
}

// target is one scheme://host:port with its queue and workers.
type target struct {
	name   string
	jobs   chan *job
	warned time.Time // last "queue full" log; used by the poll loop only
}

// job is one webhook firing on its way to a target.
type job struct {
	rec  *kgo.Record
	tk   *ticket
	req  *request
	read time.Time
}

// New checks opts and returns an Executor that is not yet started.
func New(opts Options) (*Executor, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	e := &Executor{
		opts:     o,
		log:      o.Logger.With("component", "webhook"),
		offsets:  newOffsets(),
		slots:    make(chan struct{}, o.MaxInFlight),
		released: make(chan struct{}, 1),
		targets:  map[string]*target{},
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

// Start joins the consumer group and starts delivering in the background.
// It returns once the brokers answered; delivery runs until Stop is called
// or ctx ends. Start may be called once.
func (e *Executor) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cl != nil || e.stopped {
		return errors.New("webhook executor: Start called twice")
	}
	kopts := []kgo.Opt{
		kgo.SeedBrokers(e.opts.Brokers...),
		kgo.ConsumerGroup(e.opts.Group),
		kgo.ConsumeTopics(e.opts.ActionsTopic),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(e.onRevoked),
		kgo.OnPartitionsLost(e.onLost),
	}
	cl, err := kgo.NewClient(append(kopts, e.opts.KafkaOptions...)...)
	if err != nil {
		return fmt.Errorf("webhook executor: create Kafka client: %w", err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return fmt.Errorf("webhook executor: reach Kafka brokers %v: %w", e.opts.Brokers, err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	e.cl, e.cancel = cl, cancel
	e.commitC = make(chan struct{})
	e.workers.Add(1)
	go func() {
		defer e.workers.Done()
		e.poll(runCtx)
	}()
	go func() {
		defer close(e.commitC)
		e.commitLoop(runCtx)
	}()
	e.log.Info("webhook executor started", "topic", e.opts.ActionsTopic, "group", e.opts.Group, "dlq", e.opts.DLQTopic, "signed", len(e.opts.Secret) > 0)
	return nil
}

// Stop stops reading, aborts deliveries in progress (their records are not
// acknowledged, so they are redelivered after a restart), commits the
// offsets of what was acknowledged, and leaves the group. ctx bounds the
// wait and the final commit.
func (e *Executor) Stop(ctx context.Context) error {
	return e.stop(ctx, true)
}

// kill stops like a crash: no final commit, even on revoke. Tests use it.
func (e *Executor) kill(ctx context.Context) error {
	e.killed.Store(true)
	return e.stop(ctx, false)
}

func (e *Executor) stop(ctx context.Context, commit bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped || e.cl == nil {
		e.stopped = true
		return nil
	}
	e.stopped = true
	e.cancel()
	done := make(chan struct{})
	go func() {
		e.workers.Wait()
		<-e.commitC
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("webhook executor: stop: workers still running: %w", ctx.Err())
	}
	if commit && err == nil {
		if cerr := e.commit(ctx); cerr != nil {
			err = fmt.Errorf("webhook executor: final commit: %w", cerr)
		}
	}
	e.cl.Close() // leaves the group; onRevoked commits anything newer
	e.log.Info("webhook executor stopped")
	return err
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
		recs := fetches.Records()
		// Register while rebalancing is blocked, so every ticket belongs to
		// a partition we own; revocations after this mark tickets dead.
		tickets := make([]*ticket, len(recs))
		for i, r := range recs {
			e.slots <- struct{}{}
			tickets[i] = e.offsets.add(r)
		}
		e.cl.AllowRebalance()
		for i, r := range recs {
			if !e.dispatch(ctx, r, tickets[i]) {
				return
			}
		}
	}
}

// release returns a record's in-flight token.
func (e *Executor) release() {
	<-e.slots
	select {
	case e.released <- struct{}{}:
	default:
	}
}

// skip acknowledges a record the executor does not deliver.
func (e *Executor) skip(tk *ticket, reason string) {
	e.metrics.skipped.WithLabelValues(reason).Inc()
	tk.finish()
	e.release()
}

// dispatch routes one record to its target's queue, waiting for room. It
// returns false when ctx ended.
func (e *Executor) dispatch(ctx context.Context, r *kgo.Record, tk *ticket) bool {
	if tk.dead() {
		e.release()
		return true
	}
	a, err := decodeAction(r.Value)
	if err != nil {
		e.log.Warn("skipping undecodable action record", "partition", r.Partition, "offset", r.Offset, "err", err)
		e.skip(tk, "undecodable")
		return true
	}
	if a.Type != actionType {
		e.skip(tk, "other_type")
		return true
	}
	req, err := newRequest(&a, r.Key, e.opts.Secret)
	if err != nil {
		out := outcome{kind: kindInvalid, err: err}
		if !e.deadLetter(ctx, r, nil, out, "invalid") {
			return false
		}
		tk.finish()
		e.release()
		return true
	}
	t := e.targets[req.target]
	if t == nil {
		t = &target{name: req.target, jobs: make(chan *job, e.opts.TargetQueue)}
		e.targets[req.target] = t
		for range e.opts.TargetConcurrency {
			e.workers.Add(1)
			go func() {
				defer e.workers.Done()
				e.work(ctx, t)
			}()
		}
	}
	j := &job{rec: r, tk: tk, req: req, read: time.Now()}
	queued := e.metrics.queued.WithLabelValues(t.name)
	queued.Inc()
	select {
	case t.jobs <- j:
	default:
		if now := time.Now(); now.Sub(t.warned) > 10*time.Second {
			t.warned = now
			e.log.Warn("target queue full; reading paused until it has room", "target", t.name, "queue", cap(t.jobs))
		}
		select {
		case t.jobs <- j:
		case <-ctx.Done():
			queued.Dec()
			return false
		}
	}
	return true
}

// work delivers a target's jobs until ctx ends.
func (e *Executor) work(ctx context.Context, t *target) {
	for {
		select {
		case j := <-t.jobs:
			e.metrics.queued.WithLabelValues(t.name).Dec()
			e.handle(ctx, j)
		case <-ctx.Done():
			return
		}
	}
}

// handle delivers one firing, or dead-letters it, then acknowledges it.
func (e *Executor) handle(ctx context.Context, j *job) {
	if j.tk.dead() {
		// The partition moved to another member, which redelivers it.
		e.release()
		return
	}
	out := e.deliver.deliver(ctx, j.req)
	switch out.kind {
	case kindCanceled:
		return
	case kindDelivered:
		e.metrics.delivered.WithLabelValues(j.req.target).Inc()
		e.metrics.deliveryLatency.WithLabelValues(j.req.target).Observe(time.Since(j.read).Seconds())
	default:
		if j.tk.dead() {
			// The partition moved while we retried: its new owner has the
			// record from the last commit and decides for itself.
			e.release()
			return
		}
		e.log.Warn("webhook not delivered; writing it to the DLQ", "target", j.req.target, "key", j.req.key, "reason", describe(out))
		if !e.deadLetter(ctx, j.rec, j.req, out, j.req.target) {
			return
		}
	}
	j.tk.finish()
	e.release()
}

// deadLetter writes a firing to the DLQ topic, retrying until Kafka
// acknowledges it or ctx ends (then it returns false and the firing stays
// unacknowledged).
func (e *Executor) deadLetter(ctx context.Context, r *kgo.Record, req *request, out outcome, label string) bool {
	rec := deadLetterRecord(e.opts.DLQTopic, r, req, out)
	for {
		err := e.cl.ProduceSync(ctx, rec).FirstErr()
		if err == nil {
			e.metrics.deadLettered.WithLabelValues(label, out.kind).Inc()
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		e.log.Error("write to the DLQ topic failed; retrying", "topic", e.opts.DLQTopic, "err", err)
		if sleepCtx(ctx, time.Second) != nil {
			return false
		}
		rec = deadLetterRecord(e.opts.DLQTopic, r, req, out)
	}
}

// commitLoop commits acknowledged offsets every CommitInterval.
func (e *Executor) commitLoop(ctx context.Context) {
	t := time.NewTicker(e.opts.CommitInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if err := e.commit(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("commit offsets failed; retrying at the next interval", "err", err)
			}
		case <-ctx.Done():
			return
		}
	}
}

// commit commits the offsets acknowledged since the last commit.
func (e *Executor) commit(ctx context.Context) error {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	return e.commitLocked(ctx, e.offsets.uncommitted())
}

func (e *Executor) commitLocked(ctx context.Context, offs map[string]map[int32]kgo.EpochOffset) error {
	if len(offs) == 0 {
		return nil
	}
	var rerr error
	e.cl.CommitOffsetsSync(ctx, offs, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			rerr = err
			return
		}
		ok := map[string]map[int32]kgo.EpochOffset{}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil {
					rerr = fmt.Errorf("commit %s/%d: %w", t.Topic, p.Partition, perr)
					continue
				}
				if eo, found := offs[t.Topic][p.Partition]; found {
					if ok[t.Topic] == nil {
						ok[t.Topic] = map[int32]kgo.EpochOffset{}
					}
					ok[t.Topic][p.Partition] = eo
				}
			}
		}
		e.offsets.committed(ok)
	})
	return rerr
}

// onRevoked commits what was acknowledged in the revoked partitions, then
// forgets them: their unfinished records belong to the next owner.
func (e *Executor) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	offs := e.offsets.remove(revoked)
	if e.killed.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := e.commitLocked(ctx, offs); err != nil {
		e.log.Warn("commit on revoke failed; the next owner redelivers from the previous commit", "err", err)
	}
}

// onLost forgets partitions lost without a chance to commit.
func (e *Executor) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	e.offsets.remove(lost)
}
