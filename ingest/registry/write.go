package registry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kgo"
)

// How writes are carried out. Operations queue to one writer goroutine,
// which takes up to maxBatch of them at a time (group commit) and:
//
//  1. holds the registry's transactional producer; making it fences
//     every other node's (their open transactions are aborted, their
//     next produce or commit fails);
//  2. brings the view up to the topic's committed end, so the view holds
//     every committed write of every node;
//  3. runs each operation against that view and the writes of the
//     operations before it (an operation that fails writes nothing);
//  4. produces their records in one transaction, checks they went out
//     under the producer epoch it held in step 2, and commits;
//  5. waits until its own view applied them, then answers each caller.
//
// A write that another node's fenced in between fails at step 4 and is
// tried again from step 1. So no write is checked against a stale view,
// and every record on the topic is the entity: compaction keeping only
// the last record of a key never changes what the view holds.
const (
	// maxBatch bounds the operations of one transaction.
	maxBatch = 128
	// maxAttempts bounds the tries of one transaction.
	maxAttempts = 20
	// writeTimeout bounds each wait for the view in a try.
	writeTimeout = 30 * time.Second
)

type op struct {
	fn  func(*tx) error
	err chan error
}

// do runs fn as a write: once it returns nil, its writes are committed
// and this node's view holds them. fn may run more than once (each try
// of the transaction) and must only read and write through its tx. A
// ctx that ends while the write is under way may leave it applied.
func (r *Registry) do(ctx context.Context, fn func(*tx) error) error {
	o := &op{fn: fn, err: make(chan error, 1)}
	select {
	case <-r.running:
	default:
		return fmt.Errorf("%w: Run is not running", ErrClosed)
	}
	select {
	case r.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	case <-r.stopped:
		return ErrClosed
	}
	select {
	case err := <-o.err:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w (the change may still be applied)", ctx.Err())
	case <-r.stopped:
		return ErrClosed
	}
}

func (r *Registry) writeLoop(ctx context.Context) {
	for {
		var batch []*op
		select {
		case o := <-r.ops:
			batch = append(batch, o)
		case <-ctx.Done():
			return
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case o := <-r.ops:
				batch = append(batch, o)
			default:
				break drain
			}
		}
		r.commit(ctx, batch)
	}
}

// commit tries ops' transaction until it commits, fails for good, or
// maxAttempts tries failed; then it answers each op.
func (r *Registry) commit(ctx context.Context, ops []*op) {
	backoff := 20 * time.Millisecond
	for attempt := 1; ; attempt++ {
		results, err := r.try(ctx, ops)
		if err == nil {
			for i, o := range ops {
				o.err <- results[i]
			}
			return
		}
		var done committedError
		if errors.As(err, &done) || ctx.Err() != nil || attempt == maxAttempts {
			r.metrics.writeErrors.Add(float64(len(ops)))
			for _, o := range ops {
				o.err <- fmt.Errorf("registry write: %w", err)
			}
			return
		}
		r.metrics.retries.Inc()
		r.log.Debug("registry: write tried again", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff + rand.N(backoff)):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// committedError is a write that committed but this node's view did not
// reach: it is not tried again.
type committedError struct{ err error }

func (e committedError) Error() string {
	return fmt.Sprintf("committed, but this node's view did not reach it: %v", e.err)
}
func (e committedError) Unwrap() error { return e.err }

// try runs one try of ops' transaction (steps 1 to 5 above); it returns
// each op's own result, or the error that failed the try.
func (r *Registry) try(ctx context.Context, ops []*op) ([]error, error) {
	prod, err := r.producer()
	if err != nil {
		return nil, err
	}
	pid, epoch, err := prod.ProducerID(ctx)
	if err != nil {
		r.dropProducer()
		return nil, fmt.Errorf("registry producer: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	end, err := r.committedEnd(wctx)
	if err != nil {
		return nil, err
	}
	if err := r.progress.wait(wctx, r.stopped, end); err != nil {
		return nil, err
	}
	if h := r.hooks.beforeOps; h != nil {
		h()
	}

	b := r.db.NewIndexedBatch()
	defer b.Close()
	now := r.opts.Now().UTC()
	results := make([]error, len(ops))
	var recs []*kgo.Record
	for i, o := range ops {
		t := &tx{b: b, now: now, local: map[string][]byte{}}
		if results[i] = o.fn(t); results[i] != nil {
			continue
		}
		if results[i] = t.check(); results[i] != nil {
			continue
		}
		for _, k := range t.order {
			v := t.local[k]
			if _, _, err := applyRecord(b, k, v); err != nil {
				return nil, viewError{err}
			}
			recs = append(recs, &kgo.Record{Topic: r.topic, Partition: partition, Key: []byte(k), Value: v})
		}
	}
	if len(recs) == 0 {
		return results, nil
	}

	if err := prod.BeginTransaction(); err != nil {
		r.dropProducer()
		return nil, fmt.Errorf("begin registry transaction: %w", err)
	}
	res := prod.ProduceSync(wctx, recs...)
	if err := res.FirstErr(); err != nil {
		r.abort(prod)
		return nil, fmt.Errorf("produce registry records: %w", err)
	}
	last := int64(-1)
	for _, pr := range res {
		if pr.Record.ProducerID != pid || pr.Record.ProducerEpoch != epoch {
			r.abort(prod)
			return nil, fmt.Errorf("registry producer epoch moved from %d to %d during the transaction", epoch, pr.Record.ProducerEpoch)
		}
		last = max(last, pr.Record.Offset)
	}
	if err := prod.EndTransaction(wctx, kgo.TryCommit); err != nil {
		r.abort(prod)
		return nil, fmt.Errorf("commit registry transaction: %w", err)
	}
	r.metrics.writes.Inc()
	if err := r.progress.wait(wctx, r.stopped, last+1); err != nil {
		return nil, committedError{err}
	}
	return results, nil
}

// producer returns the writer's transactional producer, made if needed.
// Every node's registry writer has the same transactional id, so making
// one (its first ProducerID) fences the others.
func (r *Registry) producer() (*kgo.Client, error) {
	if r.prod != nil {
		return r.prod, nil
	}
	p, err := r.factory.Client(
		kgo.TransactionalID("iotpipe-registry/"+r.topic),
		kgo.TransactionTimeout(10*time.Second),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	)
	if err != nil {
		return nil, fmt.Errorf("registry producer: %w", err)
	}
	r.prod = p
	return p, nil
}

// abort ends the open transaction and drops the producer: the next try
// makes a new one (and fences again).
func (r *Registry) abort(prod *kgo.Client) {
	actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = prod.AbortBufferedRecords(actx)
	_ = prod.EndTransaction(actx, kgo.TryAbort)
	r.dropProducer()
}

func (r *Registry) dropProducer() {
	if r.prod != nil {
		r.prod.Close()
		r.prod = nil
	}
}

// tx is what an operation reads and writes. Reads see the view (up to
// the topic's committed end) with the writes of the operations before
// it in the transaction; get and has also see the operation's own
// writes, index lookups do not. Writes are kept until the operation
// returns nil.
type tx struct {
	b     *pebble.Batch
	now   time.Time
	local map[string][]byte
	order []string
}

// txGet reads the entity of key.
func txGet[T any, P interface {
	*T
	Entity
}](t *tx, key string) (P, error) {
	if v, ok := t.local[key]; ok {
		if v == nil {
			return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
		}
		return decodeStored[T, P](v)
	}
	return get[T, P](t.b, key)
}

// has reports whether the entity of key exists.
func (t *tx) has(key string) (bool, error) {
	if v, ok := t.local[key]; ok {
		return v != nil, nil
	}
	return exists(t.b, key)
}

// put writes e, a new version of prev (nil when e is new).
func (t *tx) put(e, prev Entity) error {
	stamp(e, prev, t.now)
	v, err := encode(e)
	if err != nil {
		return err
	}
	t.set(e.Key(), v)
	return nil
}

// del deletes the entity of key.
func (t *tx) del(key string) { t.set(key, nil) }

func (t *tx) set(key string, v []byte) {
	if _, ok := t.local[key]; !ok {
		t.order = append(t.order, key)
	}
	t.local[key] = v
}

// check decodes every record the operation wrote as the view will.
func (t *tx) check() error {
	for _, k := range t.order {
		if v := t.local[k]; v != nil {
			if _, err := Decode([]byte(k), v); err != nil {
				return err
			}
		}
	}
	return nil
}
