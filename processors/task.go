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
// the batch, which also holds the next offset.
type task struct {
	partition int32
	procs     []Processor
	prefixes  [][]byte
	db        *pebble.DB
	clock     func() time.Time
	dryRun    bool
	dlq       string
	onError   func(proc string, err error)
}

func newTask(db *pebble.DB, partition int32, procs []Processor, clock func() time.Time, dryRun bool, dlq string) *task {
	t := &task{partition: partition, procs: procs, db: db, clock: clock, dryRun: dryRun, dlq: dlq}
	for _, p := range procs {
		t.prefixes = append(t.prefixes, processorPrefix(partition, p.Name()))
	}
	return t
}

// batch is one unit of work: state writes, records to produce, and the
// next offset, committed together.
type batch struct {
	b    *pebble.Batch
	out  []*kgo.Record
	next int64
}

func (t *task) newBatch() *batch {
	return &batch{b: t.db.NewIndexedBatch(), next: -1}
}

func (t *task) tx(bt *batch, i int, source []byte) *Tx {
	return &Tx{
		store:     batchStore{bt.b},
		prefix:    t.prefixes[i],
		partition: t.partition,
		now:       t.clock(),
		dryRun:    t.dryRun,
		emit:      func(r *kgo.Record) { bt.out = append(bt.out, r) },
		source:    source,
	}
}

// apply runs every processor over rec. A record whose envelope cannot be
// decoded, and an event a processor fails on, go to the DLQ with the
// reason; the other processors and events carry on. Only a state-store
// failure is returned.
func (t *task) apply(ctx context.Context, bt *batch, rec *kgo.Record) error {
	source := append(strconv.AppendInt(nil, int64(rec.Partition), 10), '/')
	source = strconv.AppendInt(source, rec.Offset, 10)
	bt.next = rec.Offset + 1
	env, err := schemas.DecodeEnvelope(rec.Headers)
	if err != nil {
		bt.out = append(bt.out, dlqRecord(t.dlq, rec, "envelope", err))
		return nil
	}
	ev := &Event{Partition: rec.Partition, Offset: rec.Offset, Thing: string(rec.Key), Payload: rec.Value, Envelope: env}
	for i, p := range t.procs {
		if err := p.Process(ctx, t.tx(bt, i, withProc(source, i)), ev); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if t.onError != nil {
				t.onError(p.Name(), err)
			}
			bt.out = append(bt.out, dlqRecord(t.dlq, rec, p.Name(), err))
		}
	}
	return nil
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
		if err := tk.Tick(ctx, t.tx(bt, i, withProc(source, i)), now); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if t.onError != nil {
				t.onError(p.Name(), err)
			}
			bt.out = append(bt.out, &kgo.Record{Topic: t.dlq, Headers: dlqHeaders(nil, p.Name(), err, fmt.Sprintf("tick/%d", t.partition))})
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
		return fmt.Errorf("commit state of partition %d: %w", t.partition, err)
	}
	return bt.b.Close()
}

// dlqRecord describes a record that could not be processed.
func dlqRecord(topic string, rec *kgo.Record, stage string, err error) *kgo.Record {
	headers := dlqHeaders(append([]kgo.RecordHeader(nil), rec.Headers...), stage, err, fmt.Sprintf("%s/%d/%d", rec.Topic, rec.Partition, rec.Offset))
	return &kgo.Record{Topic: topic, Key: rec.Key, Value: rec.Value, Headers: headers}
}

// dlqHeaders appends the DLQ headers (stage, reason, source) to h: the one
// shape of every record the runtime sends to the DLQ, events and ticks.
func dlqHeaders(h []kgo.RecordHeader, stage string, err error, source string) []kgo.RecordHeader {
	return append(h,
		kgo.RecordHeader{Key: "dlq.stage", Value: []byte(stage)},
		kgo.RecordHeader{Key: "dlq.reason", Value: []byte(err.Error())},
		kgo.RecordHeader{Key: "dlq.source", Value: []byte(source)},
	)
}

// withProc returns a fresh copy of source with the processor's letter.
func withProc(source []byte, i int) []byte {
	out := make([]byte, 0, len(source)+2)
	return append(append(out, source...), '/', byte('a'+i))
}
