package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// partition is the registry topic's partition every record goes to: the
// registry is one ordered stream (other partitions of the topic, made
// like every iotpipe topic, stay empty), so a write can be checked
// against everything before it.
const partition int32 = 0

// fetchWait is how long a fetch waits at the end of the log for a new
// record (a new record answers it at once).
const fetchWait = 250 * time.Millisecond

// progress is the view's position: the next offset to apply. Waiters
// wake at each move.
type progress struct {
	mu    sync.Mutex
	next  int64
	moved chan struct{}
}

func newProgress(next int64) *progress {
	return &progress{next: next, moved: make(chan struct{})}
}

func (p *progress) set(next int64) {
	p.mu.Lock()
	p.next = next
	close(p.moved)
	p.moved = make(chan struct{})
	p.mu.Unlock()
}

func (p *progress) get() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next
}

// wait returns once the view's next offset is at least target.
func (p *progress) wait(ctx context.Context, stopped <-chan struct{}, target int64) error {
	for {
		p.mu.Lock()
		next, moved := p.next, p.moved
		p.mu.Unlock()
		if next >= target {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return fmt.Errorf("registry view at offset %d, waiting for %d: %w", next, target, ctx.Err())
		case <-stopped:
			return ErrClosed
		}
	}
}

// committedEnd returns the registry partition's last stable offset: the
// view holds every committed record once its next offset reaches it.
func (r *Registry) committedEnd(ctx context.Context) (int64, error) {
	ends, err := kadm.NewClient(r.cl).ListCommittedOffsets(ctx, r.topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("end offset of %s: %w", r.topic, err)
	}
	o, ok := ends.Lookup(r.topic, partition)
	if !ok {
		return 0, fmt.Errorf("end offset of %s: no partition %d", r.topic, partition)
	}
	return o.Offset, nil
}

// follow applies the registry topic to the view from its position until
// ctx ends, read committed. Fetch errors are logged and retried; only a
// failure of the view itself ends it.
func (r *Registry) follow(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := r.followFrom(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var fatal viewError
		if errors.As(err, &fatal) {
			return err
		}
		r.log.Warn("registry: reading the registry topic failed; retrying", "topic", r.topic, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

// viewError is a failure of the local view (not of the log).
type viewError struct{ err error }

func (e viewError) Error() string { return e.err.Error() }
func (e viewError) Unwrap() error { return e.err }

// followFrom finds the partition's leader and fetches from the view's
// position until an error.
func (r *Registry) followFrom(ctx context.Context) error {
	md, err := kadm.NewClient(r.cl).Metadata(ctx, r.topic)
	if err != nil {
		return fmt.Errorf("metadata of %s: %w", r.topic, err)
	}
	td, ok := md.Topics[r.topic]
	if !ok || td.Err != nil {
		return fmt.Errorf("metadata of %s: %v", r.topic, td.Err)
	}
	pd, ok := td.Partitions[partition]
	if !ok || pd.Err != nil {
		return fmt.Errorf("metadata of %s: partition %d: %v", r.topic, partition, pd.Err)
	}
	if err := r.checkTopicID(td.ID); err != nil {
		return viewError{err}
	}
	f := eventlog.PartitionFetch{
		Broker: r.cl.Broker(int(pd.Leader)), Topic: r.topic, TopicID: td.ID, Partition: partition,
		MaxWait: fetchWait, Decompressor: kgo.DefaultDecompressor(),
	}
	for {
		pos := r.progress.get()
		fp, next, err := f.Fetch(ctx, pos)
		if err != nil {
			return err
		}
		if errors.Is(fp.Err, kerr.OffsetOutOfRange) {
			// The log no longer holds the view's position (records
			// deleted before it, or a log that lost its end): the view
			// is rebuilt from the log's start.
			r.log.Warn("registry: the view's position is out of the log's range; rebuilding the view from the log",
				"topic", r.topic, "position", pos, "log_start", fp.LogStartOffset, "high_watermark", fp.HighWatermark)
			if err := r.reset(td.ID); err != nil {
				return viewError{err}
			}
			continue
		}
		if fp.Err != nil {
			return fmt.Errorf("fetch %s/%d at %d: %w", r.topic, partition, pos, fp.Err)
		}
		r.checkedOnce.Do(func() { close(r.checked) })
		if next > pos {
			if h := r.hooks.beforeApply; h != nil {
				h()
			}
			if err := r.applyFetch(td.ID, fp.Records, next); err != nil {
				return viewError{err}
			}
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// checkTopicID rebuilds the view when it was made from another topic of
// the same name (deleted and created again).
func (r *Registry) checkTopicID(id [16]byte) error {
	have, next, err := position(r.db)
	if err != nil {
		return err
	}
	if next > 0 && have != id {
		r.log.Warn("registry: the registry topic was created again; rebuilding the view from it", "topic", r.topic)
		return r.reset(id)
	}
	return nil
}

// reset empties the view and moves it to the start of the topic.
func (r *Registry) reset(id [16]byte) error {
	b := r.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange([]byte{0}, []byte{0xff}, nil); err != nil {
		return err
	}
	if err := setPosition(b, id, 0); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("registry view: reset: %w", err)
	}
	r.progress.set(0)
	return nil
}

// applyFetch applies a fetch's records and moves the view to next, in
// one Pebble batch; then it tells the waiters and the watchers.
func (r *Registry) applyFetch(id [16]byte, recs []*kgo.Record, next int64) error {
	b := r.db.NewIndexedBatch()
	defer b.Close()
	changes := make([]Change, 0, len(recs))
	for _, rec := range recs {
		key := string(rec.Key)
		old, cur, err := applyRecord(b, key, rec.Value)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				return err
			}
			r.metrics.invalid.Inc()
			r.log.Error("registry: a record of the registry topic is not valid; its key is treated as deleted",
				"topic", r.topic, "offset", rec.Offset, "key", key, "err", err)
		}
		r.metrics.applied.Inc()
		if old != nil || cur != nil {
			changes = append(changes, Change{Key: key, Offset: rec.Offset, Old: old, New: cur})
		}
	}
	if err := setPosition(b, id, next); err != nil {
		return fmt.Errorf("registry view: %w", err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("registry view: apply up to offset %d: %w", next, err)
	}
	r.progress.set(next)
	r.notify(changes)
	return nil
}
