package processors

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/iotpipe/iotpipe/internal/eventlog"
)

// Work on a running node's partition (iotpipe rebuild through the HTTP
// API): Runner.Hold holds a partition's worker between two batches and
// lets the caller read, correct and replace the partition's state while
// the other partitions, and ingest, go on. The held partition's events
// wait in the log (its lag grows) and are applied after, on the state
// as the caller left it.

// ErrNotProcessed says the runner does not process the partition (not
// assigned to it, or no longer).
var ErrNotProcessed = errors.New("partition not processed by this node")

// Held is a running runner's partition held between two batches (see
// Runner.Hold). Its methods are valid only during the Hold call.
type Held struct{ w *worker }

// holdOp is a Hold call waiting for its partition's worker.
type holdOp struct {
	fn   func(*Held) error
	done chan error
}

// Partitions returns the partitions the runner processes now, in order.
func (r *Runner) Partitions() []int32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	ps := make([]int32, 0, len(r.workers))
	for p, w := range r.workers {
		if w.done != nil {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	return ps
}

// Hold runs fn on partition p's worker between two of its batches: no
// event of p is applied, no tick of p runs, until fn returns, and what
// fn changed is what the next batch starts from. The other partitions go
// on meanwhile. A revoke of p waits for fn (it should heed ctx). Hold
// fails with ErrNotProcessed when the runner does not process p.
func (r *Runner) Hold(ctx context.Context, p int32, fn func(*Held) error) error {
	r.mu.Lock()
	w := r.workers[p]
	r.mu.Unlock()
	if w == nil || w.done == nil {
		return fmt.Errorf("partition %d: %w", p, ErrNotProcessed)
	}
	op := &holdOp{fn: fn, done: make(chan error, 1)}
	select {
	case w.ops <- op:
	case <-w.done:
		return fmt.Errorf("partition %d: %w", p, ErrNotProcessed)
	case <-ctx.Done():
		return ctx.Err()
	}
	return <-op.done
}

// runHeld runs a Hold call on the worker's goroutine.
func (w *worker) runHeld(op *holdOp) {
	op.done <- op.fn(&Held{w: w})
}

// Next is the offset of the partition's next event to apply (-1: none
// applied yet).
func (h *Held) Next() int64 { return h.w.t.next }

// LastTick is the clock of the partition's last tick that was applied
// (zero: none since the partition started here). Timers and windows due
// by then have fired; the others have not.
func (h *Held) LastTick() time.Time { return h.w.t.ticked }

// State returns the partition's committed state, keyed as the changelog
// is (the local changelog checkpoint left out), and the changelog end it
// is current with.
func (h *Held) State() (map[string][]byte, int64, error) {
	return partitionState(h.w.r.db, h.w.t.partition)
}

// Replace sets the keys of the named processors ("" names the runtime's
// own, the next offset; no names: every key) to those of state, and the
// changelog end the state is current with, in one synced batch; the
// partition's memos are emptied and its next offset read again. The
// caller keeps the changelog in step (WriteChangelog): a partition
// whose local state is not what the changelog holds is restored from
// the changelog at its next start.
func (h *Held) Replace(names []string, state map[string][]byte, changelogEnd int64) error {
	t := h.w.t
	if err := replaceState(h.w.r.db, t.partition, names, state, changelogEnd); err != nil {
		return Fatal(err)
	}
	t.resetMemos()
	next, err := readOffset(h.w.r.db, t.partition)
	if err != nil {
		return err
	}
	t.next = next
	h.w.next.Store(next)
	return nil
}

// WriteChangelog writes kv (a nil value deletes its key; keys as the
// changelog's) to the partition's changelog in one transaction of the
// partition's own producer, so its owner is not fenced, and returns the
// changelog partition's end after it.
func (h *Held) WriteChangelog(ctx context.Context, kv map[string][]byte) (int64, error) {
	w := h.w
	p, topic := w.t.partition, w.r.opts.Topics.Changelog
	if err := produceCommitted(ctx, w.prod, changelogRecords(topic, p, kv)); err != nil {
		return 0, fmt.Errorf("changelog %s/%d: %w", topic, p, err)
	}
	return eventlog.EndOffset(ctx, w.r.factory.Client, topic, p)
}
