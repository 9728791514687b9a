package processors

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Harness drives processors without a broker: events in, emitted records
// out, state in an in-memory Pebble. Tests use it; so does replay, with
// DryRun. It runs the same task code as the Kafka runtime.
//
// Calls on different partitions may run concurrently, as the runtime
// runs partitions (replay does so with RecordsAt and TickAt, which give
// each call its own clock); calls on one partition must not. The
// exported fields are set before the first call.
type Harness struct {
	db    *pebble.DB
	procs []Processor
	// mu guards parts and changelog.
	mu      sync.Mutex
	parts   map[int32]*harnessPart
	offsets map[int32]int64
	// Now is the clock processors see; tests set it. Defaults to a fixed
	// instant (2026-01-01T00:00:00Z) so runs are repeatable.
	Now time.Time
	// DLQ is the topic failures are emitted to (default iotpipe.dlq).
	DLQ string
	// DryRun turns side effects off (Tx.DryRun reports it), as in replay.
	DryRun bool
	// RawInput runs the processors over records that are not events
	// (their envelope is not decoded; Event.Headers has the headers), as
	// a Runner whose Input is another topic does.
	RawInput bool
	// DropChangelog drops the changelog records once made (benchmarks,
	// which would otherwise keep them all).
	DropChangelog bool
	// Partitions is the events topic's partition count processors see
	// through Tx.PartitionOf (default 1).
	Partitions int
	// BatchEvents keeps a partition's batch open over RecordsAt and
	// TickAt calls until it applied that many events (default 0: each
	// call is a batch), as one batch of the runtime would span several
	// polls: a key written again and again is written to the store once
	// per batch. Commit commits the open batches.
	BatchEvents int

	// changelog holds, per partition, what the runtime would have
	// written to the changelog topic.
	changelog map[int32][]*kgo.Record
}

// harnessPart is one partition's task and the clock of the call in
// progress on it.
type harnessPart struct {
	t *task
	// at is the clock of a RecordsAt or TickAt call in progress (zero:
	// Harness.Now).
	at time.Time
	// open is the batch BatchEvents keeps open, n the events it applied.
	open *batch
	n    int
}

// NewHarness returns a harness running procs, in order, over an
// in-memory store.
func NewHarness(procs ...Processor) (*Harness, error) {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		return nil, fmt.Errorf("open in-memory state: %w", err)
	}
	return &Harness{
		db: db, procs: procs, parts: map[int32]*harnessPart{}, offsets: map[int32]int64{}, changelog: map[int32][]*kgo.Record{},
		Now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		DLQ: schemas.DefaultTopics().DLQ,
	}, nil
}

// Restart forgets what the tasks hold in memory (memos), as a restarted
// node would; the state stays.
func (h *Harness) Restart() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, hp := range h.parts {
		hp.t.resetMemos()
	}
}

// Close releases the store.
func (h *Harness) Close() error { return h.db.Close() }

// part returns partition's task and clock, made on first use.
func (h *Harness) part(partition int32) *harnessPart {
	h.mu.Lock()
	defer h.mu.Unlock()
	hp, ok := h.parts[partition]
	if !ok {
		hp = &harnessPart{}
		clock := func() time.Time {
			if !hp.at.IsZero() {
				return hp.at
			}
			return h.Now
		}
		hp.t = newTask(h.db, partition, h.procs, clock, h.DryRun, h.DLQ, h.Partitions)
		hp.t.raw = h.RawInput
		h.parts[partition] = hp
	}
	return hp
}

func (h *Harness) task(partition int32) *task { return h.part(partition).t }

// Publish runs one event through the processors as if it were the next
// record of partition 0 and returns the records they emitted. env.Type
// defaults to publish and env.ReceivedAt to h.Now.
func (h *Harness) Publish(ctx context.Context, thing string, env schemas.Envelope, payload []byte) ([]*kgo.Record, error) {
	if env.Type == "" {
		env.Type = schemas.EventPublish
	}
	if env.ReceivedAt == 0 {
		env.ReceivedAt = h.Now.UnixNano()
	}
	rec := &kgo.Record{Topic: schemas.DefaultTopics().Events, Key: []byte(thing), Value: payload, Headers: env.Headers(), Offset: h.offsets[0]}
	h.offsets[0]++
	return h.Record(ctx, rec)
}

// Record runs one raw record (partition and offset as set in rec).
func (h *Harness) Record(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	t := h.task(rec.Partition)
	bt := t.newBatch()
	if err := t.apply(ctx, bt, rec, nil); err != nil {
		t.abort(bt)
		return nil, err
	}
	return h.commit(t, bt)
}

// commit keeps bt's changelog records and commits it, as the runtime
// does once the transaction committed.
func (h *Harness) commit(t *task, bt *batch) ([]*kgo.Record, error) {
	cl, err := t.changelog(schemas.DefaultTopics().Changelog, bt)
	if err != nil {
		t.abort(bt)
		return nil, err
	}
	var kept []*kgo.Record
	if !h.DropChangelog {
		// The task reuses the records and their bytes: keep copies.
		kept = make([]*kgo.Record, len(cl))
		for i, r := range cl {
			kept[i] = &kgo.Record{Topic: r.Topic, Partition: r.Partition, Key: append([]byte(nil), r.Key...)}
			if r.Value != nil {
				kept[i].Value = append([]byte{}, r.Value...)
			}
		}
	}
	if err := t.commit(bt, -1); err != nil {
		return nil, err
	}
	if !h.DropChangelog {
		h.mu.Lock()
		h.changelog[t.partition] = append(h.changelog[t.partition], kept...)
		h.mu.Unlock()
	}
	return bt.out, nil
}

// Tick runs every Ticker processor on partition at h.Now.
func (h *Harness) Tick(ctx context.Context, partition int32) ([]*kgo.Record, error) {
	t := h.task(partition)
	bt := t.newBatch()
	if err := t.tick(ctx, bt); err != nil {
		t.abort(bt)
		return nil, err
	}
	return h.commit(t, bt)
}

// Changelog returns what the runtime would have written to the
// changelog topic for partition so far, in order.
func (h *Harness) Changelog(partition int32) []*kgo.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changelog[partition]
}

// Restore replaces partition's state with what the changelog records
// recs hold (as read from the changelog topic, in order), as the runtime
// does for a partition whose local state is missing or behind.
func (h *Harness) Restore(partition int32, recs []*kgo.Record) error {
	t := h.task(partition)
	lo := partitionPrefix(partition)
	b := h.db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange(lo, prefixEnd(lo), nil); err != nil {
		return err
	}
	for _, rec := range recs {
		key := append(append([]byte(nil), lo...), rec.Key...)
		var err error
		if rec.Value == nil {
			err = b.Delete(key, nil)
		} else {
			err = b.Set(key, rec.Value, nil)
		}
		if err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	t.resetMemos()
	next, err := readOffset(h.db, partition)
	if err != nil {
		return err
	}
	t.next = next
	if next >= 0 && partition == 0 {
		h.offsets[0] = next
	}
	h.mu.Lock()
	h.changelog[partition] = append([]*kgo.Record(nil), recs...)
	h.mu.Unlock()
	return nil
}

// Snapshot returns every state key and value of partition (keys without
// the partition prefix, runtime keys included), for comparing a state
// with a rebuild.
func (h *Harness) Snapshot(partition int32) (map[string]string, error) {
	return snapshot(h.db, partition)
}

func snapshot(db *pebble.DB, partition int32) (map[string]string, error) {
	lo := partitionPrefix(partition)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for ok := it.First(); ok; ok = it.Next() {
		out[string(it.Key()[len(lo):])] = string(it.Value())
	}
	return out, it.Close()
}

// Read returns the value of key in processor's state in any partition,
// like Runner.Read.
func (h *Harness) Read(processor string, key []byte) ([]byte, bool, error) {
	return readAnyPartition(h.db, processor, key)
}

// Records runs raw records of one partition as one batch, the way the
// runtime runs a poll: state and next offset commit once at the end. It
// returns every record emitted.
func (h *Harness) Records(ctx context.Context, recs []*kgo.Record) ([]*kgo.Record, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	t := h.task(recs[0].Partition)
	bt := t.newBatch()
	for _, rec := range recs {
		if rec.Partition != recs[0].Partition {
			t.abort(bt)
			return nil, fmt.Errorf("harness: a batch holds one partition's records (%d and %d)", recs[0].Partition, rec.Partition)
		}
		if err := t.apply(ctx, bt, rec, nil); err != nil {
			t.abort(bt)
			return nil, err
		}
	}
	return h.commit(t, bt)
}

// RecordsAt is Records with the processors' clock at now for this call
// only (Harness.Now stays as it is), into the partition's open batch
// when BatchEvents is set: calls on different partitions may run
// concurrently. envs, when not nil, are the records' envelopes already
// decoded from their headers (envs[i] is recs[i]'s, read during the
// call), as a reader that decoded them to select events has them; nil:
// they are decoded here.
func (h *Harness) RecordsAt(ctx context.Context, now time.Time, recs []*kgo.Record, envs []*schemas.Envelope) ([]*kgo.Record, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	if envs != nil && (len(envs) != len(recs) || h.RawInput) {
		return nil, fmt.Errorf("harness: %d envelopes for %d records (raw input %t)", len(envs), len(recs), h.RawInput)
	}
	hp := h.part(recs[0].Partition)
	for _, rec := range recs {
		if rec.Partition != recs[0].Partition {
			return nil, fmt.Errorf("harness: a batch holds one partition's records (%d and %d)", recs[0].Partition, rec.Partition)
		}
	}
	return h.runAt(ctx, hp, now, len(recs), func(t *task, bt *batch) error {
		for i, rec := range recs {
			var env *schemas.Envelope
			if envs != nil {
				env = envs[i]
			}
			if err := t.apply(ctx, bt, rec, env); err != nil {
				return err
			}
		}
		return nil
	})
}

// TickAt is Tick with the processors' clock at now for this call only,
// into the partition's open batch when BatchEvents is set.
func (h *Harness) TickAt(ctx context.Context, partition int32, now time.Time) ([]*kgo.Record, error) {
	return h.runAt(ctx, h.part(partition), now, 0, func(t *task, bt *batch) error { return t.tick(ctx, bt) })
}

// runAt runs fn at now into hp's open batch (a new one when there is
// none), commits it once it applied BatchEvents events, and returns what
// fn emitted.
func (h *Harness) runAt(ctx context.Context, hp *harnessPart, now time.Time, events int, fn func(*task, *batch) error) ([]*kgo.Record, error) {
	hp.at = now
	defer func() { hp.at = time.Time{} }()
	t := hp.t
	bt := hp.open
	if bt == nil {
		bt = t.newBatch()
	}
	hp.open = nil
	mark := len(bt.out)
	if err := fn(t, bt); err != nil {
		t.abort(bt)
		return nil, err
	}
	out := bt.out[mark:len(bt.out):len(bt.out)]
	if hp.n += events; hp.n < h.BatchEvents {
		hp.open = bt
		return out, nil
	}
	hp.n = 0
	if _, err := h.commit(t, bt); err != nil {
		return nil, err
	}
	return out, nil
}

// Commit commits the batches BatchEvents keeps open (no call may be in
// progress).
func (h *Harness) Commit() error {
	h.mu.Lock()
	parts := slices.Collect(maps.Values(h.parts))
	h.mu.Unlock()
	for _, hp := range parts {
		if bt := hp.open; bt != nil {
			hp.open, hp.n = nil, 0
			if _, err := h.commit(hp.t, bt); err != nil {
				return err
			}
		}
	}
	return nil
}
