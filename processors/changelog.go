package processors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The changelog: every batch writes the last value of each state key it
// changed (a tombstone for a delete) and then the partition's next
// offset to the changelog topic, partition for partition like the
// events, in the batch's transaction. A record's key is the state key
// without the partition prefix ("<processor>\x00<key>", the offset under
// "\x00offset"), so a changelog partition is, once compacted, exactly
// the events partition's state.
//
// Locally, Pebble keeps with the state the end offset of the changelog
// partition the state is current with (the offset after the commit
// marker of the batch's transaction). A task that starts on a partition
// compares it with the changelog's end: equal, or nothing committed
// since, and the local state is current; otherwise (a lost disk, a new
// node, a partition that was processed elsewhere meanwhile, a crash
// between the transaction and the Pebble commit) the partition's state
// is restored from the changelog and the task resumes at the offset
// recorded there. Events are never applied again to state that already
// reflects them, so nothing they caused is emitted again.

// prepareState makes t's local state current with the changelog and
// sets t.next. prod must have fenced earlier owners of the partition's
// transactional id (their open transactions aborted), so the changelog
// partition's committed end is final.
func (r *Runner) prepareState(ctx context.Context, t *task, prod *kgo.Client) (restored bool, err error) {
	p := t.partition
	topic := r.opts.Topics.Changelog
	next, err := readOffset(r.db, p)
	if err != nil {
		return false, err
	}
	clEnd, err := readChangelogEnd(r.db, p)
	if err != nil {
		return false, err
	}
	hwm, err := eventlog.EndOffset(ctx, r.factory.Client, topic, p)
	if err != nil {
		return false, err
	}
	switch {
	case clEnd >= 0 && clEnd == hwm:
		t.next = next
		return false, nil
	case clEnd > hwm:
		// The changelog lost what it had (the topic was recreated):
		// the local state is all there is.
		r.opts.Logger.Warn("changelog partition is behind the local state (recreated?); writing the local state to it",
			"partition", p, "changelog_end", hwm, "checkpoint", clEnd)
		return false, r.bootstrap(ctx, t, prod)
	}
	from := max(clEnd, 0)
	committed := false
	end, err := eventlog.ReadPartition(ctx, r.factory.Client, topic, p, from, func(*kgo.Record) error {
		committed = true
		return eventlog.ErrStop
	})
	if err != nil {
		return false, fmt.Errorf("read changelog %s/%d: %w", topic, p, err)
	}
	switch {
	case !committed && clEnd >= 0:
		// Only aborted transactions since: current.
		t.next = next
		return false, r.setChangelogEnd(p, hwm)
	case !committed && next >= 0:
		// State from before the changelog existed: write it there.
		return false, r.bootstrap(ctx, t, prod)
	case !committed:
		// A partition never processed.
		t.next = -1
		return false, r.setChangelogEnd(p, max(end, hwm))
	}
	return true, r.restore(ctx, t)
}

func (r *Runner) setChangelogEnd(p int32, end int64) error {
	if err := r.db.Set(changelogEndKey(p), encodeOffset(end), pebble.NoSync); err != nil {
		return Fatal(fmt.Errorf("write changelog checkpoint of partition %d: %w", p, err))
	}
	return nil
}

// restore replaces partition t.partition's local state with the
// changelog's and sets t.next to the offset recorded there.
func (r *Runner) restore(ctx context.Context, t *task) error {
	p := t.partition
	topic := r.opts.Topics.Changelog
	start := time.Now()
	lo := partitionPrefix(p)
	b := r.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(lo, prefixEnd(lo), nil); err != nil {
		return Fatal(err)
	}
	n := 0
	end, err := eventlog.ReadPartition(ctx, r.factory.Client, topic, p, 0, func(rec *kgo.Record) error {
		key := append(append(make([]byte, 0, len(lo)+len(rec.Key)), lo...), rec.Key...)
		n++
		if rec.Value == nil {
			return b.Delete(key, nil)
		}
		return b.Set(key, rec.Value, nil)
	})
	if err != nil {
		return fmt.Errorf("restore partition %d from %s: %w", p, topic, err)
	}
	if err := b.Set(changelogEndKey(p), encodeOffset(end), nil); err != nil {
		return Fatal(err)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return Fatal(fmt.Errorf("commit restored state of partition %d: %w", p, err))
	}
	t.resetMemos()
	next, err := readOffset(r.db, p)
	if err != nil {
		return err
	}
	t.next = next
	r.metrics.restores.Inc()
	r.opts.Logger.Info("partition state restored from the changelog", "partition", p, "records", n,
		"resume_at", next, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// bootstrap writes the whole local state of t's partition to the
// changelog in one transaction (state kept from before the changelog
// existed, or a changelog that lost it), so the changelog holds it from
// now on.
func (r *Runner) bootstrap(ctx context.Context, t *task, prod *kgo.Client) error {
	p := t.partition
	topic := r.opts.Topics.Changelog
	lo := partitionPrefix(p)
	it, err := r.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return Fatal(err)
	}
	skip := string(changelogEndKey(p))
	var recs []*kgo.Record
	for ok := it.First(); ok; ok = it.Next() {
		if string(it.Key()) == skip {
			continue
		}
		recs = append(recs, &kgo.Record{Topic: topic, Partition: p,
			Key: append([]byte(nil), it.Key()[len(lo):]...), Value: append([]byte{}, it.Value()...)})
	}
	if err := it.Close(); err != nil {
		return Fatal(err)
	}
	if err := produceCommitted(ctx, prod, recs); err != nil {
		return fmt.Errorf("changelog bootstrap of partition %d: %w", p, err)
	}
	hwm, err := eventlog.EndOffset(ctx, r.factory.Client, topic, p)
	if err != nil {
		return err
	}
	next, err := readOffset(r.db, p)
	if err != nil {
		return err
	}
	t.next = next
	r.opts.Logger.Info("partition state written to the changelog", "partition", p, "records", len(recs))
	return r.setChangelogEnd(p, hwm)
}

// fenced reports whether err says another owner took the partition's
// transactional id: the task must stop, not retry.
func fenced(err error) bool {
	return errors.Is(err, errFenced) || isFencedKafkaErr(err)
}

var errFenced = errors.New("partition fenced by another owner")
