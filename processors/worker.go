package processors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// worker applies one partition's records and runs its ticks. It owns
// the partition's transactional producer: every batch is one
// transaction (what the processors emit, the changelog, the offset).
type worker struct {
	r    *Runner
	t    *task
	cl   *kgo.Client // the consumer group client (pause/resume)
	prod *kgo.Client // the partition's transactional producer
	// queue holds fetched records of the partition, in log order;
	// paused is set while the partition's fetching is paused because
	// the queue is full. Both under mu.
	mu     sync.Mutex
	queue  []kgo.FetchTopicPartition
	paused bool
	// held are records taken from the queue and not yet committed: a
	// batch that failed is applied again from them.
	held []*kgo.Record
	// logStart is the log start offset of the last fetch (retention).
	logStart int64
	// wake tells the worker the queue grew.
	wake chan struct{}
	// stop asks the worker to return; done is closed when it has.
	stop, done chan struct{}
	// ops are Hold calls, run between two batches.
	ops chan *holdOp
	// next mirrors t.next for the poll loop's offset commits.
	next atomic.Int64
}

// A worker's queue pauses its partition's fetching at queueHigh polls
// and resumes it at queueLow, so a partition with a backlog never holds
// back the poll loop (and the other partitions), and memory stays
// bounded.
const (
	queueHigh = 4
	queueLow  = 1
)

// batchTimeout bounds one batch's production and commit, so that a
// shutdown or a revoke waits at most that long for the batch in progress.
const batchTimeout = 30 * time.Second

// take moves the oldest queued fetch to held, resuming the partition's
// fetching when the queue has drained enough; false when the queue is
// empty.
func (w *worker) take() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) == 0 {
		return false
	}
	fp := w.queue[0]
	w.queue[0] = kgo.FetchTopicPartition{}
	w.queue = w.queue[1:]
	if w.paused && len(w.queue) <= queueLow {
		w.paused = false
		w.cl.ResumeFetchPartitions(map[string][]int32{fp.Topic: {fp.Partition}})
	}
	w.held = append(w.held, fp.Records...)
	w.logStart = fp.LogStartOffset
	last := fp.Records[len(fp.Records)-1].Offset
	w.r.metrics.lag.WithLabelValues(itoa(fp.Partition)).Set(float64(fp.HighWatermark - last - 1))
	return true
}

// continuous drops the held records the state already reflects, and
// returns the ones that continue from the state's next offset, as many
// as one batch takes. In the events topic (written without
// transactions) a record past the next offset is a gap: events the
// retention removed before they were applied (reported, then accepted),
// or records from before a rebalance, dropped. A transactional input
// (the actions topic) has gaps of its own (transaction markers, aborted
// records), so there only records below the next offset are dropped.
func (w *worker) continuous(max int) []*kgo.Record {
	t := w.t
	i := 0
	for i < len(w.held) && t.next >= 0 && w.held[i].Offset < t.next {
		i++
	}
	w.held = w.held[i:]
	if len(w.held) == 0 {
		return nil
	}
	if t.raw {
		return w.held[:min(len(w.held), max)]
	}
	if first := w.held[0].Offset; t.next >= 0 && first > t.next {
		if w.logStart > t.next {
			w.r.metrics.lost.Add(float64(first - t.next))
			w.r.opts.Logger.Error("events removed by the log's retention before they were applied: raise --retention above the longest processing outage",
				"partition", t.partition, "from", t.next, "to", first-1, "lost", first-t.next)
		} else {
			w.r.opts.Logger.Warn("records do not continue the partition's state; dropped and fetched again",
				"partition", t.partition, "next", t.next, "got", first)
			w.held = nil
			w.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{w.r.opts.Input: {t.partition: {Epoch: -1, Offset: t.next}}})
			return nil
		}
	}
	n := 1
	for n < len(w.held) && n < max && w.held[n].Offset == w.held[n-1].Offset+1 {
		n++
	}
	return w.held[:n]
}

// work is a partition's worker loop: held and queued records batch after
// batch, ticks between them. A batch that fails aborts, and the task
// starts again from its state (restored from the changelog when needed);
// a fenced producer (another owner took the partition) stops the worker.
func (w *worker) work(ctx context.Context) {
	defer close(w.done)
	defer w.prod.Close()
	r := w.r
	ticker := time.NewTicker(r.opts.TickInterval)
	defer ticker.Stop()
	backoff := 100 * time.Millisecond
	for {
		select {
		case <-w.stop:
			return
		case <-ctx.Done():
			return
		case op := <-w.ops:
			w.runHeld(op)
			continue
		default:
		}
		var err error
		select {
		case <-ticker.C:
			err = w.tick(ctx)
		default:
			if recs := w.continuous(maxBatch); len(recs) > 0 {
				err = w.batch(ctx, recs)
			} else if !w.take() {
				select {
				case <-w.stop:
					return
				case <-ctx.Done():
					return
				case <-ticker.C:
					err = w.tick(ctx)
				case op := <-w.ops:
					w.runHeld(op)
				case <-w.wake:
				}
			}
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if fenced(err) {
			r.opts.Logger.Warn("partition taken over by another processor node; stopping its task", "partition", w.t.partition, "err", err)
			return
		}
		r.metrics.aborts.Inc()
		r.opts.Logger.Error("batch aborted; the partition's task starts again from its state", "partition", w.t.partition, "err", err, "retry_in", backoff)
		select {
		case <-w.stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
		if err := w.restart(ctx); err != nil {
			if fenced(err) {
				r.opts.Logger.Warn("partition taken over by another processor node; stopping its task", "partition", w.t.partition, "err", err)
				return
			}
			r.opts.Logger.Error("restart of the partition's task failed; retrying", "partition", w.t.partition, "err", err)
		}
	}
}

// maxBatch is the most records one batch applies.
const maxBatch = 10000

// restart starts the task again: a new producer (which fences and aborts
// what the old one left open) and the state made current with the
// changelog.
func (w *worker) restart(ctx context.Context) error {
	w.prod.Close()
	prod, err := w.r.newProducer(w.t.partition)
	if err != nil {
		return err
	}
	w.prod = prod
	w.t.resetMemos()
	return w.r.prepare(ctx, w.t, prod)
}

// batch applies recs as one transaction. What the processors emit is
// produced while the batch goes on (every sendEvery records); the
// changelog and the offset follow; the transaction commits only once
// every record is acknowledged, and then the Pebble batch.
func (w *worker) batch(ctx context.Context, recs []*kgo.Record) error {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	defer cancel()
	t := w.t
	if err := w.r.space.Check(); err != nil {
		return fmt.Errorf("state of partition %d: %w", t.partition, err)
	}
	bt := t.newBatch()
	if err := w.prod.BeginTransaction(); err != nil {
		t.abort(bt)
		return fmt.Errorf("begin transaction of partition %d: %w", t.partition, err)
	}
	out := &outputs{changelog: w.r.opts.Topics.Changelog, partition: t.partition}
	sent := 0
	for i, rec := range recs {
		if err := t.apply(bctx, bt, rec, nil); err != nil {
			return w.abort(bctx, bt, out, err)
		}
		if i%sendEvery == sendEvery-1 {
			out.produce(bctx, w.prod, bt.out[sent:])
			sent = len(bt.out)
		}
	}
	if err := w.finish(bctx, bt, out, sent); err != nil {
		return err
	}
	w.r.metrics.events.Add(float64(len(recs)))
	w.r.metrics.batches.Inc()
	w.held = w.held[len(recs):]
	return nil
}

// sendEvery is how many events a batch applies between two sends of
// what they emitted.
const sendEvery = 256

// tick runs the Ticker processors of the partition and, when they wrote
// or emitted anything, commits it like a batch.
func (w *worker) tick(ctx context.Context) error {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
	defer cancel()
	t := w.t
	prev := t.ticked
	err := w.tickBatch(bctx)
	if err != nil {
		t.ticked = prev // not applied
	}
	return err
}

// tickBatch is tick's batch: the ticks applied, committed when they
// wrote or emitted anything.
func (w *worker) tickBatch(bctx context.Context) error {
	t := w.t
	bt := t.newBatch()
	if err := t.tick(bctx, bt); err != nil {
		t.abort(bt)
		return err
	}
	// A tick is a batch of its own: its Pebble batch tells whether it
	// wrote anything.
	if err := t.seal(bt); err != nil {
		t.abort(bt)
		return Fatal(err)
	}
	if bt.b.Empty() && len(bt.out) == 0 {
		bt.b.Close()
		return nil
	}
	if err := w.r.space.Check(); err != nil {
		t.abort(bt)
		return fmt.Errorf("state of partition %d: %w", t.partition, err)
	}
	if err := w.prod.BeginTransaction(); err != nil {
		t.abort(bt)
		return fmt.Errorf("begin transaction of partition %d: %w", t.partition, err)
	}
	return w.finish(bctx, bt, &outputs{changelog: w.r.opts.Topics.Changelog, partition: t.partition}, 0)
}

// finish produces bt.out[sent:] and the batch's changelog, waits until
// every record is acknowledged, commits the transaction, then the
// Pebble batch with the changelog position it is current with.
func (w *worker) finish(ctx context.Context, bt *batch, out *outputs, sent int) error {
	t := w.t
	out.produce(ctx, w.prod, bt.out[sent:])
	cl, err := t.changelog(w.r.opts.Topics.Changelog, bt)
	if err != nil {
		return w.abort(ctx, bt, out, Fatal(err))
	}
	out.produce(ctx, w.prod, cl)
	if err := out.wait(); err != nil {
		return w.abort(ctx, bt, out, fmt.Errorf("produce outputs of partition %d: %w", t.partition, err))
	}
	if f := w.r.opts.BeforeCommit; f != nil {
		f(t.partition, bt.out)
	}
	if err := w.prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return w.abort(ctx, bt, out, fmt.Errorf("commit transaction of partition %d: %w", t.partition, err))
	}
	if f := w.r.opts.AfterCommit; f != nil {
		f(t.partition, bt.out)
	}
	w.r.metrics.emitted.Add(float64(len(bt.out)))
	// The commit marker follows the last changelog record: the
	// partition's end is then one past it.
	clEnd := int64(-1)
	if out.lastChangelog >= 0 {
		clEnd = out.lastChangelog + 2
	}
	if err := t.commit(bt, clEnd); err != nil {
		return err
	}
	w.next.Store(t.next)
	return nil
}

// abort abandons a batch: its transaction, its Pebble batch and the
// memos; it returns cause.
func (w *worker) abort(ctx context.Context, bt *batch, out *outputs, cause error) error {
	_ = out.wait()
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = w.prod.AbortBufferedRecords(actx)
	if err := w.prod.EndTransaction(actx, kgo.TryAbort); err != nil && !fenced(cause) {
		cause = fmt.Errorf("%w (and the abort failed: %v)", cause, err)
	}
	w.t.abort(bt)
	return cause
}

// outputs tracks the records a batch produces: how many are in flight,
// the first failure, and the offset of the last changelog record.
type outputs struct {
	wg        sync.WaitGroup
	mu        sync.Mutex
	first     error
	changelog string
	partition int32
	// lastChangelog is the highest offset a changelog record of the
	// partition got (-1: none yet); under mu.
	lastChangelog int64
	started       bool
}

// produce sends recs without waiting for them.
func (o *outputs) produce(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) {
	if !o.started {
		o.started = true
		o.lastChangelog = -1
	}
	o.wg.Add(len(recs))
	for _, rec := range recs {
		cl.Produce(ctx, rec, o.done)
	}
}

func (o *outputs) done(r *kgo.Record, err error) {
	o.mu.Lock()
	if err != nil && o.first == nil {
		o.first = err
	}
	if err == nil && r.Topic == o.changelog && r.Partition == o.partition && r.Offset > o.lastChangelog {
		o.lastChangelog = r.Offset
	}
	o.mu.Unlock()
	o.wg.Done()
}

// wait waits for every record sent and returns the first failure.
func (o *outputs) wait() error {
	o.wg.Wait()
	if !o.started {
		o.lastChangelog = -1
	}
	return o.first
}

func isFencedKafkaErr(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) ||
		errors.Is(err, kerr.TransactionalIDAuthorizationFailed)
}
