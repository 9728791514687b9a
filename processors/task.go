package processors

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unsafe"

	"github.com/cockroachdb/pebble"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// task runs the processors over one partition's events against one
// Pebble batch. The caller produces the emitted records and the batch's
// changelog, then commits the batch, which also holds the next offset,
// or abandons it (abort).
type task struct {
	partition int32
	procs     []Processor
	names     []string
	prefixes  [][]byte
	db        *pebble.DB
	clock     func() time.Time
	dryRun    bool
	// raw: the input is not the events topic; records are not decoded
	// as events.
	raw     bool
	dlq     string
	onError func(proc string, err error)
	// partitions is the events topic's partition count (for
	// PartitionOf); hash partitions keys as ingest's producer does.
	partitions int
	hash       kgo.TopicPartitioner
	// memos holds each processor's memo of this partition, caches its
	// state keys' values (see stateCache).
	memos  []*Memo
	caches []*stateCache
	// next is the offset of the next event to apply (the state's), -1
	// before the first.
	next int64
	// ticked is the clock of the last tick applied (zero: none yet).
	ticked time.Time
	// tx, ev and ov are reused for every call of a processor (all valid
	// only during the call).
	tx Tx
	ev Event
	ov overlay
	// clSlab and clRecs hold the last changelog's records (see
	// changelog).
	clSlab []kgo.Record
	clRecs []*kgo.Record
	// src holds the id base of the event being applied (Tx.source):
	// a call's Tx reads it only during the call.
	src []byte
}

func newTask(db *pebble.DB, partition int32, procs []Processor, clock func() time.Time, dryRun bool, dlq string, partitions int) *task {
	t := &task{partition: partition, procs: procs, db: db, clock: clock, dryRun: dryRun, dlq: dlq, next: -1,
		partitions: max(partitions, 1), hash: kgo.StickyKeyPartitioner(nil).ForTopic("")}
	for _, p := range procs {
		t.names = append(t.names, p.Name())
		t.prefixes = append(t.prefixes, processorPrefix(partition, p.Name()))
		t.memos = append(t.memos, newMemo(DefaultMemoSize))
		t.caches = append(t.caches, newStateCache(DefaultStateCacheSize))
	}
	return t
}

// indexOf returns the index of processor in the task.
func (t *task) indexOf(processor string) (int, bool) {
	for i, n := range t.names {
		if n == processor {
			return i, true
		}
	}
	return 0, false
}

func (t *task) partitionOf(key []byte) int32 {
	return int32(t.hash.Partition(&kgo.Record{Key: key}, t.partitions))
}

// batch is one unit of work: state writes, records to produce, and the
// next offset, committed together. Its state writes are kept in the
// task's caches until it ends (see stateCache); seal then writes them
// to b, one per key, and the changelog is made from them.
type batch struct {
	b      *pebble.Batch
	sealed bool
	out    []*kgo.Record
	next   int64
	// arena holds small byte values of emitted records (source ids);
	// its chunks are never reused, so the slices handed out stay valid.
	arena []byte
}

// arenaChunk is the size of a batch's arena chunks.
const arenaChunk = 16 << 10

// alloc returns n bytes (capacity n) from the batch's arena.
func (bt *batch) alloc(n int) []byte {
	if n > arenaChunk/8 {
		return make([]byte, n)
	}
	if len(bt.arena)+n > cap(bt.arena) {
		bt.arena = make([]byte, 0, arenaChunk)
	}
	start := len(bt.arena)
	bt.arena = bt.arena[:start+n]
	return bt.arena[start : start+n : start+n]
}

// get reads key's committed value (the current batch's writes are in
// the caches); the value is the caller's.
func (t *task) get(key []byte) ([]byte, bool, error) {
	v, closer, err := t.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state get: %w", err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, true, nil
}

// read reads key of processor i as the batch sees it: the batch's
// writes, then the committed state (cached). The value is the caller's.
func (t *task) read(i int, key []byte) ([]byte, bool, error) {
	c := t.caches[i]
	if v, absent, ok := c.get(key); ok {
		if absent {
			return nil, false, nil
		}
		return append([]byte(nil), v...), true, nil
	}
	v, ok, err := t.get(key)
	if err != nil {
		return nil, false, err
	}
	c.put(key, v, !ok)
	return v, ok, nil
}

// scanCommitted scans [lower, upper) of the committed state.
func (t *task) scanCommitted(lower, upper []byte, fn func(key, value []byte) bool) error {
	it, err := t.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("state scan: %w", err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		if !fn(it.Key(), it.Value()) {
			break
		}
	}
	return it.Close()
}

// scan scans [lower, upper) of processor i's keys as the batch sees
// them: the committed state with the batch's writes merged in.
func (t *task) scan(i int, lower, upper []byte, fn func(key, value []byte) bool) error {
	return mergeScan(t.scanCommitted, lower, upper, t.caches[i].writesIn(lower, upper), fn)
}

func (t *task) newBatch() *batch {
	return &batch{b: t.db.NewBatch(), next: -1}
}

// seal writes the batch's state writes (the last value of each key the
// batch wrote, a delete for a deleted one) to its Pebble batch, once;
// the batch takes no more writes after it.
func (t *task) seal(bt *batch) error {
	if bt.sealed {
		return nil
	}
	bt.sealed = true
	for _, c := range t.caches {
		for _, e := range c.dirty {
			var err error
			if e.absent {
				err = bt.b.Delete(unsafeBytes(e.k), nil)
			} else {
				err = bt.b.Set(unsafeBytes(e.k), e.v, nil)
			}
			if err != nil {
				return fmt.Errorf("state write of partition %d: %w", t.partition, err)
			}
		}
	}
	return nil
}

// unsafeBytes returns the bytes of s without copying them; they must
// not be modified.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// abort abandons a batch: its writes are dropped, and with them every
// memo (they may hold values of those writes).
func (t *task) abort(bt *batch) {
	bt.b.Close()
	t.resetMemos()
}

func (t *task) resetMemos() {
	for _, m := range t.memos {
		m.reset()
	}
	for _, c := range t.caches {
		c.reset()
	}
}

// txFor returns the task's Tx set up for processor i over bt, its id
// base source ("<partition>/<offset>" of the event).
func (t *task) txFor(bt *batch, i int, source []byte) *Tx {
	t.ov.reset()
	t.tx = Tx{
		t:         t,
		bt:        bt,
		ov:        &t.ov,
		proc:      i,
		prefix:    t.prefixes[i],
		name:      t.names[i],
		partition: t.partition,
		now:       t.clock(),
		dryRun:    t.dryRun,
		source:    source,
		memo:      t.memos[i],
		kbuf:      t.tx.kbuf,
	}
	return &t.tx
}

// call runs fn for processor i as one call: its writes reach the batch
// only when it returns nil; otherwise they and its emitted records are
// dropped, its memo emptied, and the failure returned with fatal set
// when it must abort the batch (a store failure, ErrFatal, the context).
func (t *task) call(ctx context.Context, bt *batch, i int, source []byte, fn func(*Tx) error) (err error, fatal bool) {
	if bt.sealed {
		return Fatal(fmt.Errorf("%s: a call on a sealed batch of partition %d", t.names[i], t.partition)), true
	}
	mark := len(bt.out)
	tx := t.txFor(bt, i, source)
	err = fn(tx)
	if tx.failed != nil {
		err, fatal = tx.failed, true
	}
	if err == nil {
		t.ov.apply(t.caches[i])
		return nil, false
	}
	clear(bt.out[mark:])
	bt.out = bt.out[:mark]
	t.memos[i].reset()
	// The state cache holds only what the batch holds: the call's
	// writes never reached it (see overlay).
	if ctx.Err() != nil {
		return ctx.Err(), true
	}
	return err, fatal || errors.Is(err, ErrFatal)
}

// apply runs every processor over rec. env is rec's envelope when the
// caller has decoded it from rec.Headers already (replay's reader does,
// to select events); nil: apply decodes it. A record whose envelope
// cannot be decoded, and an event a processor fails on, go to the DLQ
// with the reason; the other processors and events carry on. A fatal
// failure (see call) is returned: the batch must be abandoned.
func (t *task) apply(ctx context.Context, bt *batch, rec *kgo.Record, env *schemas.Envelope) error {
	t.src = append(strconv.AppendInt(t.src[:0], int64(rec.Partition), 10), '/')
	t.src = strconv.AppendInt(t.src, rec.Offset, 10)
	source := t.src
	bt.next = rec.Offset + 1
	t.ev = Event{Partition: rec.Partition, Offset: rec.Offset, Thing: string(rec.Key), Payload: rec.Value, Headers: rec.Headers}
	switch {
	case env != nil:
		t.ev.Envelope = *env
	case !t.raw:
		var err error
		if t.ev.Envelope, err = schemas.DecodeEnvelope(rec.Headers); err != nil {
			bt.out = append(bt.out, schemas.DeadLetter(t.dlq, rec, "envelope", err))
			return nil
		}
	}
	ev := &t.ev
	for i, p := range t.procs {
		err, fatal := t.call(ctx, bt, i, source, func(tx *Tx) error { return p.Process(ctx, tx, ev) })
		if fatal {
			return fmt.Errorf("%s at offset %d of partition %d: %w", p.Name(), rec.Offset, rec.Partition, err)
		}
		if err != nil {
			if t.onError != nil {
				t.onError(p.Name(), err)
			}
			bt.out = append(bt.out, schemas.DeadLetter(t.dlq, rec, p.Name(), err))
		}
	}
	return nil
}

// tick runs every Ticker's Tick into bt; a failing Tick leaves nothing
// and sends its reason to the DLQ. The batch stays open: a runtime tick
// seals it (a batch of its own), replay's harness goes on with events.
func (t *task) tick(ctx context.Context, bt *batch) error {
	now := t.clock()
	t.ticked = now
	source := append(strconv.AppendInt(nil, int64(t.partition), 10), "/tick"...)
	for i, p := range t.procs {
		tk, ok := p.(Ticker)
		if !ok {
			continue
		}
		err, fatal := t.call(ctx, bt, i, source, func(tx *Tx) error { return tk.Tick(ctx, tx, now) })
		if fatal {
			return fmt.Errorf("%s tick of partition %d: %w", p.Name(), t.partition, err)
		}
		if err != nil {
			if t.onError != nil {
				t.onError(p.Name(), err)
			}
			bt.out = append(bt.out, &kgo.Record{Topic: t.dlq, Headers: schemas.AppendDLQHeaders(nil, p.Name(), err.Error(), fmt.Sprintf("tick/%d", t.partition))})
		}
	}
	return nil
}

// changelog returns the changelog records of bt: the last write of every
// key the batch wrote (a tombstone for a delete), keyed by the state key
// without the partition prefix, processor by processor in the order of
// their first writes, followed, when the batch moved the offset, by the
// runtime's offset record. It seals the batch. The records, their keys
// and values are the task's, valid until its next batch writes or makes
// its changelog: they must be produced (and acknowledged) before.
func (t *task) changelog(topic string, bt *batch) ([]*kgo.Record, error) {
	if err := t.seal(bt); err != nil {
		return nil, err
	}
	n := 1
	for _, c := range t.caches {
		n += len(c.dirty)
	}
	if cap(t.clSlab) < n {
		t.clSlab = make([]kgo.Record, n+n/4)
		t.clRecs = make([]*kgo.Record, 0, n+n/4)
	}
	recs := t.clRecs[:0]
	add := func(key, value []byte) {
		r := &t.clSlab[len(recs)]
		*r = kgo.Record{Topic: topic, Partition: t.partition, Key: key, Value: value}
		recs = append(recs, r)
	}
	const np = 5 // len(partitionPrefix(p))
	for _, c := range t.caches {
		for _, e := range c.dirty {
			var v []byte // a nil value is a tombstone
			if !e.absent {
				v = e.v
				if v == nil {
					v = []byte{}
				}
			}
			add(unsafeBytes(e.k[np:]), v)
		}
	}
	if bt.next >= 0 {
		add(offsetKey(t.partition)[np:], encodeOffset(bt.next))
	}
	t.clRecs = recs
	return recs, nil
}

// commit writes the batch with its next offset and, when known, the
// changelog position it is current with (clEnd, -1: unchanged). Records
// must have been produced (and the transaction committed) before;
// dry-run tasks drop them.
func (t *task) commit(bt *batch, clEnd int64) error {
	if err := t.seal(bt); err != nil {
		t.abort(bt)
		return Fatal(err)
	}
	if bt.next >= 0 {
		if err := bt.b.Set(offsetKey(t.partition), encodeOffset(bt.next), nil); err != nil {
			t.abort(bt)
			return Fatal(err)
		}
	}
	if clEnd >= 0 {
		if err := bt.b.Set(changelogEndKey(t.partition), encodeOffset(clEnd), nil); err != nil {
			t.abort(bt)
			return Fatal(err)
		}
	}
	if err := bt.b.Commit(pebble.NoSync); err != nil {
		t.abort(bt)
		return Fatal(fmt.Errorf("commit state of partition %d: %w", t.partition, err))
	}
	for _, c := range t.caches {
		c.committed()
	}
	if bt.next >= 0 {
		t.next = bt.next
	}
	return bt.b.Close()
}
