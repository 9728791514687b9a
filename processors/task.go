package processors

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// task runs the processors over one partition's events against one
// Pebble batch. The caller produces the emitted records and then commits
// the batch, which also holds the next offset, or abandons it (abort).
type task struct {
	partition int32
	procs     []Processor
	prefixes  [][]byte
	db        *pebble.DB
	clock     func() time.Time
	dryRun    bool
	dlq       string
	onError   func(proc string, err error)
	// memos holds each processor's memo of this partition.
	memos []*Memo
	// tx and ev are reused for every call of a processor (both are
	// valid only during the call); src is the source id buffer.
	tx  Tx
	ev  Event
	src []byte
}

func newTask(db *pebble.DB, partition int32, procs []Processor, clock func() time.Time, dryRun bool, dlq string) *task {
	t := &task{partition: partition, procs: procs, db: db, clock: clock, dryRun: dryRun, dlq: dlq}
	for _, p := range procs {
		t.prefixes = append(t.prefixes, processorPrefix(partition, p.Name()))
		t.memos = append(t.memos, newMemo(DefaultMemoSize))
	}
	return t
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

func (t *task) newBatch() *batch {
	return &batch{b: t.db.NewIndexedBatch(), next: -1}
}

// abort abandons a batch: its writes are dropped, and with them every
// memo (they may hold values of those writes).
func (t *task) abort(bt *batch) {
	bt.b.Close()
	for _, m := range t.memos {
		m.reset()
	}
}

// txFor returns the task's Tx set up for processor i over bt, with the
// source id base + "/" + the processor's letter.
func (t *task) txFor(bt *batch, i int, base []byte) *Tx {
	t.src = append(append(t.src[:0], base...), '/', byte('a'+i))
	t.tx = Tx{
		store:     batchStore{bt.b},
		prefix:    t.prefixes[i],
		partition: t.partition,
		now:       t.clock(),
		dryRun:    t.dryRun,
		bt:        bt,
		source:    t.src,
		memo:      t.memos[i],
		kbuf:      t.tx.kbuf,
	}
	return &t.tx
}

// apply runs every processor over rec. A record whose envelope cannot be
// decoded, and an event a processor fails on, go to the DLQ with the
// reason; the other processors and events carry on. Only a state-store
// failure is returned.
func (t *task) apply(ctx context.Context, bt *batch, rec *kgo.Record) error {
	var buf [32]byte
	source := append(strconv.AppendInt(buf[:0], int64(rec.Partition), 10), '/')
	source = strconv.AppendInt(source, rec.Offset, 10)
	bt.next = rec.Offset + 1
	env, err := schemas.DecodeEnvelope(rec.Headers)
	if err != nil {
		bt.out = append(bt.out, schemas.DeadLetter(t.dlq, rec, "envelope", err))
		return nil
	}
	t.ev = Event{Partition: rec.Partition, Offset: rec.Offset, Thing: string(rec.Key), Payload: rec.Value, Envelope: env}
	ev := &t.ev
	for i, p := range t.procs {
		if err := p.Process(ctx, t.txFor(bt, i, source), ev); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if t.onError != nil {
				t.onError(p.Name(), err)
			}
			bt.out = append(bt.out, schemas.DeadLetter(t.dlq, rec, p.Name(), err))
		}
	}
	return nil
}

// restore runs every Restorer's Restore into bt (which then holds no
// offset: a crash before the first event's batch restores again, over the
// same keys). It returns how many entries they put back.
func (t *task) restore(ctx context.Context, bt *batch, read ReadTopic) (int, error) {
	source := append(strconv.AppendInt(nil, int64(t.partition), 10), "/restore"...)
	n := 0
	for i, p := range t.procs {
		rs, ok := p.(Restorer)
		if !ok {
			continue
		}
		m, err := rs.Restore(ctx, t.txFor(bt, i, source), read)
		if err != nil {
			return n, fmt.Errorf("restore %s of partition %d: %w", p.Name(), t.partition, err)
		}
		n += m
	}
	return n, nil
}

// tick runs every Ticker's Tick.
func (t *task) tick(ctx context.Context, bt *batch) error {
	now := t.clock()
	source := append(strconv.AppendInt(nil, int64(t.partition), 10), "/tick/"...)
	source = strconv.AppendInt(source, now.UnixNano(), 10)
	for i, p := range t.procs {
		tk, ok := p.(Ticker)
		if !ok {
			continue
		}
		if err := tk.Tick(ctx, t.txFor(bt, i, source), now); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if t.onError != nil {
				t.onError(p.Name(), err)
			}
			bt.out = append(bt.out, &kgo.Record{Topic: t.dlq, Headers: schemas.AppendDLQHeaders(nil, p.Name(), err.Error(), fmt.Sprintf("tick/%d", t.partition))})
		}
	}
	return nil
}

// commit writes the batch with its next offset. Records must have been
// produced (and acknowledged) before; dry-run tasks drop them.
func (t *task) commit(bt *batch) error {
	if bt.next >= 0 {
		if err := bt.b.Set(offsetKey(t.partition), encodeOffset(bt.next), nil); err != nil {
			return err
		}
	}
	if err := bt.b.Commit(pebble.NoSync); err != nil {
		t.abort(bt)
		return fmt.Errorf("commit state of partition %d: %w", t.partition, err)
	}
	return bt.b.Close()
}
