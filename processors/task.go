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
	// tx, ev and ov are reused for every call of a processor (all valid
	// only during the call).
	tx Tx
	ev Event
	ov overlay
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

// prefixOf returns the state prefix of processor in this partition.
func (t *task) prefixOf(processor string) ([]byte, bool) {
	for i, n := range t.names {
		if n == processor {
			return t.prefixes[i], true
		}
	}
	return nil, false
}

func (t *task) partitionOf(key []byte) int32 {
	return int32(t.hash.Partition(&kgo.Record{Key: key}, t.partitions))
}

// batch is one unit of work: state writes, records to produce, and the
// next offset, committed together.
type batch struct {
	b    *pebble.Batch
	out  []*kgo.Record
	next int64
	// arena holds small byte values of emitted records (source ids);
	// its chunks are never reused, so the slices handed out stay valid.
	arena []byte
	// vbuf is reused for values read from the batch.
	vbuf []byte
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

// get reads key through the batch (its writes, then the committed
// state); the value is the caller's.
func (bt *batch) get(key []byte) ([]byte, bool, error) {
	v, closer, err := bt.b.Get(key)
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

func (bt *batch) scan(lower, upper []byte, fn func(key, value []byte) bool) error {
	it, err := bt.b.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
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

func (t *task) newBatch() *batch {
	return &batch{b: t.db.NewIndexedBatch(), next: -1}
}

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
		prefix:    t.prefixes[i],
		name:      t.names[i],
		partition: t.partition,
		now:       t.clock(),
		dryRun:    t.dryRun,
		source:    source,
		memo:      t.memos[i],
		cache:     t.caches[i],
		kbuf:      t.tx.kbuf,
	}
	return &t.tx
}

// call runs fn for processor i as one call: its writes reach the batch
// only when it returns nil; otherwise they and its emitted records are
// dropped, its memo emptied, and the failure returned with fatal set
// when it must abort the batch (a store failure, ErrFatal, the context).
func (t *task) call(ctx context.Context, bt *batch, i int, source []byte, fn func(*Tx) error) (err error, fatal bool) {
	mark := len(bt.out)
	tx := t.txFor(bt, i, source)
	err = fn(tx)
	if tx.failed != nil {
		err, fatal = tx.failed, true
	}
	if err == nil {
		if aerr := t.ov.apply(bt, t.caches[i]); aerr != nil {
			return Fatal(fmt.Errorf("state write: %w", aerr)), true
		}
		return nil, false
	}
	clear(bt.out[mark:])
	bt.out = bt.out[:mark]
	t.memos[i].reset()
	// The state cache holds only what the batch holds: the call's
	// writes never reached it.
	if ctx.Err() != nil {
		return ctx.Err(), true
	}
	return err, fatal || errors.Is(err, ErrFatal)
}

// apply runs every processor over rec. A record whose envelope cannot be
// decoded, and an event a processor fails on, go to the DLQ with the
// reason; the other processors and events carry on. A fatal failure
// (see call) is returned: the batch must be abandoned.
func (t *task) apply(ctx context.Context, bt *batch, rec *kgo.Record) error {
	var buf [32]byte
	source := append(strconv.AppendInt(buf[:0], int64(rec.Partition), 10), '/')
	source = strconv.AppendInt(source, rec.Offset, 10)
	bt.next = rec.Offset + 1
	var env schemas.Envelope
	if !t.raw {
		var err error
		if env, err = schemas.DecodeEnvelope(rec.Headers); err != nil {
			bt.out = append(bt.out, schemas.DeadLetter(t.dlq, rec, "envelope", err))
			return nil
		}
	}
	t.ev = Event{Partition: rec.Partition, Offset: rec.Offset, Thing: string(rec.Key), Payload: rec.Value, Envelope: env, Headers: rec.Headers}
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

// tick runs every Ticker's Tick; a failing Tick leaves nothing and sends
// its reason to the DLQ.
func (t *task) tick(ctx context.Context, bt *batch) error {
	now := t.clock()
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
// without the partition prefix, followed, when the batch moved the
// offset, by the runtime's offset record. Keys and values point into the
// batch, which must stay open until they are produced.
func (t *task) changelog(topic string, bt *batch) ([]*kgo.Record, error) {
	type write struct {
		key, value []byte
		del        bool
	}
	var order []string
	last := map[string]write{}
	r := bt.b.Reader()
	for {
		kind, k, v, ok, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("read batch of partition %d: %w", t.partition, err)
		}
		if !ok {
			break
		}
		var w write
		switch kind {
		case pebble.InternalKeyKindSet:
			w = write{key: k, value: v}
		case pebble.InternalKeyKindDelete:
			w = write{key: k, del: true}
		default:
			return nil, fmt.Errorf("batch of partition %d: unexpected write kind %v", t.partition, kind)
		}
		s := unsafe.String(unsafe.SliceData(k), len(k))
		if _, seen := last[s]; !seen {
			order = append(order, s)
		}
		last[s] = w
	}
	n := len(partitionPrefix(t.partition))
	recs := make([]*kgo.Record, 0, len(order)+1)
	for _, s := range order {
		w := last[s]
		rec := &kgo.Record{Topic: topic, Partition: t.partition, Key: w.key[n:]}
		if !w.del {
			rec.Value = w.value
			if rec.Value == nil {
				rec.Value = []byte{} // a nil value is a tombstone
			}
		}
		recs = append(recs, rec)
	}
	if bt.next >= 0 {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: t.partition, Key: offsetKey(t.partition)[n:], Value: encodeOffset(bt.next)})
	}
	return recs, nil
}

// commit writes the batch with its next offset and, when known, the
// changelog position it is current with (clEnd, -1: unchanged). Records
// must have been produced (and the transaction committed) before;
// dry-run tasks drop them.
func (t *task) commit(bt *batch, clEnd int64) error {
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
	if bt.next >= 0 {
		t.next = bt.next
	}
	return bt.b.Close()
}
