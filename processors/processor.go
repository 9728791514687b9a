// Package processors is the partition-task runtime: a consumer group over
// the events topic, one task per partition, each with its Pebble state,
// the state's changelog and the next offset. Processors
// (processors/shadow, processors/rules, ...) plug in through the Processor
// interface; the runtime never imports them.
//
// What the runtime promises (ARCHITECTURE.md, "State, effects and
// replay"):
//
//   - State is exactly once: a batch's state writes and its next offset
//     go to the changelog topic in one Kafka transaction with everything
//     the batch emits, and then to Pebble in one batch. A partition whose
//     local state is missing or behind the changelog is restored from it
//     and resumes at the offset recorded there: events are never applied
//     twice, and effects are never emitted again for events already
//     handled.
//   - Emitted records are exactly once for read-committed consumers (the
//     transaction), and each carries a deterministic id (iot.src).
//   - A failed call leaves nothing: its writes and its emitted records are
//     discarded (the event goes to the DLQ); a store or produce failure
//     aborts the batch and the task starts again from its state.
package processors

import (
	"context"
	"errors"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/iotpipe/iotpipe/schemas/payload"
	"github.com/twmb/franz-go/pkg/kgo"
)

// GCPercent is the garbage collector target the iotpipe binary runs its
// processes with (cmd/iotpipe sets it unless GOGC is in the
// environment): the hot paths allocate a little per event, and fewer GC
// cycles buy throughput for modest memory. Processor benchmarks use it to
// measure processors as they run.
const GCPercent = 200

// Processor handles the events of one partition, in log order. Process is
// called once per event; all state it reads and writes goes through tx,
// and every record it wants to send goes through tx.Emit. The runtime
// commits the state, the emitted records and the next offset together,
// so a processor never sees an event twice against the same state.
//
// A processor must be a function of its state and the event (and tx.Now,
// never time.Now, never a node flag, never a read outside tx), so that a
// rebuild on any node gives the same state and outputs.
//
// A Process call that returns an error leaves nothing: its writes and
// the records it emitted are discarded, its memo is emptied, and the
// event goes to the DLQ with the error; the other processors and events
// carry on. An error that wraps ErrFatal (and any state-store failure,
// whatever Process returns) instead aborts the whole batch and restarts
// the partition's task from its state.
type Processor interface {
	// Name is the processor's stable name; it namespaces its state keys
	// and appears in the ids of what it emits.
	Name() string
	// Process applies one event. tx and ev are valid only during the
	// call (the runtime reuses them); values taken from them (strings,
	// the decoded payload) may be kept.
	Process(ctx context.Context, tx *Tx, ev *Event) error
}

// Ticker is implemented by processors with timers. Tick is called per
// partition at the runtime's tick interval, between the partition's
// batches, with state access and emit like Process; what it does
// commits like a batch. Before emitting what a timer produces, Tick
// calls tx.At with the timer's deadline, so the ids of its outputs do
// not depend on when the tick ran.
type Ticker interface {
	Tick(ctx context.Context, tx *Tx, now time.Time) error
}

// ErrFatal marks an error that aborts the batch and restarts the
// partition's task (a store or produce failure, a broken invariant), as
// opposed to an error about one event, which sends the event to the DLQ.
var ErrFatal = errors.New("fatal to the batch")

// Fatal wraps err so that it aborts the batch (see ErrFatal).
func Fatal(err error) error {
	if err == nil {
		return nil
	}
	return fatalError{err}
}

type fatalError struct{ err error }

func (e fatalError) Error() string        { return e.err.Error() }
func (e fatalError) Unwrap() []error      { return []error{e.err, ErrFatal} }
func (e fatalError) Is(target error) bool { return target == ErrFatal }

// Event is one record of the events topic with its decoded envelope. The
// payload is decoded as JSON at most once, on first use, and shared by
// every processor.
type Event struct {
	// Partition and Offset locate the record in the events topic.
	Partition int32
	Offset    int64
	// Thing is the record key: the thing name.
	Thing string
	// Payload is the record value: the payload bytes as received.
	Payload []byte
	// Envelope is the decoded record headers (of an events record).
	Envelope schemas.Envelope
	// Headers are the record's headers as they are.
	Headers []kgo.RecordHeader

	decoded bool
	value   any
	err     error
}

// JSON returns the payload decoded by payload.Decode, decoding it on the
// first call only. A payload that is not JSON returns an error wrapping
// payload.ErrNotJSON.
func (e *Event) JSON() (any, error) {
	if !e.decoded {
		e.value, e.err = payload.Decode(e.Payload)
		e.decoded = true
	}
	return e.value, e.err
}

// ReceivedAt returns the envelope's receive time.
func (e *Event) ReceivedAt() time.Time { return time.Unix(0, e.Envelope.ReceivedAt) }

// Tx is a processor's view of one partition during one event (or tick):
// its own key space of the partition's state, the records it emits, its
// memo, and the clock. Its writes are the call's own until the call
// returns without error. A Tx is valid only during the call it is passed
// to.
type Tx struct {
	t         *task
	bt        *batch
	ov        *overlay
	proc      int // the processor's index in the task
	prefix    []byte
	name      string
	partition int32
	now       time.Time
	dryRun    bool
	// source is the id base of what the call emits, "<partition>/<offset>"
	// or "<partition>/t<deadline ms>", without the processor name.
	source []byte
	seq    int
	memo   *Memo
	// failed is the first state-store failure of the call: fatal to the
	// batch whatever the processor returns.
	failed error
	// kbuf holds the prefixed key of a Get, Set or Delete (the overlay
	// copies what it keeps).
	kbuf []byte
}

// Partition returns the events-topic partition this Tx belongs to.
func (tx *Tx) Partition() int32 { return tx.partition }

// Now returns the task's clock (injectable in tests and replay).
func (tx *Tx) Now() time.Time { return tx.now }

// DryRun reports whether side effects are off (replay): emitted records
// are collected for inspection but never produced.
func (tx *Tx) DryRun() bool { return tx.dryRun }

// Memo returns the processor's memo of this partition (see Memo).
func (tx *Tx) Memo() *Memo { return tx.memo }

// scratchKey returns the prefixed key in tx's buffer, valid until the
// next call.
func (tx *Tx) scratchKey(prefix, k []byte) []byte {
	tx.kbuf = append(append(tx.kbuf[:0], prefix...), k...)
	return tx.kbuf
}

// fail records a store failure (fatal to the batch) and returns it.
func (tx *Tx) fail(err error) error {
	if err != nil && tx.failed == nil {
		tx.failed = Fatal(err)
	}
	return err
}

// Get reads a key of this processor's state in this partition: the
// call's own writes first, then the batch and the committed state. The
// value is the caller's.
func (tx *Tx) Get(key []byte) ([]byte, bool, error) {
	k := tx.scratchKey(tx.prefix, key)
	if v, del, ok := tx.ov.get(k); ok {
		if del {
			return nil, false, nil
		}
		return append([]byte(nil), v...), true, nil
	}
	v, ok, err := tx.t.read(tx.proc, k)
	return v, ok, tx.fail(err)
}

// Set writes a key of this processor's state in this partition.
func (tx *Tx) Set(key, value []byte) error {
	tx.ov.set(tx.scratchKey(tx.prefix, key), value, false)
	return nil
}

// Delete removes a key of this processor's state in this partition.
func (tx *Tx) Delete(key []byte) error {
	tx.ov.set(tx.scratchKey(tx.prefix, key), nil, true)
	return nil
}

// Scan iterates this processor's keys in [lower, upper) of this
// partition, the call's own writes included; keys are passed without the
// partition/processor prefix. A nil upper means "to the end of this
// processor's key space".
func (tx *Tx) Scan(lower, upper []byte, fn func(key, value []byte) bool) error {
	lo := append(append([]byte(nil), tx.prefix...), lower...)
	var hi []byte
	if upper == nil {
		hi = prefixEnd(tx.prefix)
	} else {
		hi = append(append([]byte(nil), tx.prefix...), upper...)
	}
	n := len(tx.prefix)
	base := func(lo, hi []byte, fn func(k, v []byte) bool) error { return tx.t.scan(tx.proc, lo, hi, fn) }
	return tx.fail(tx.ov.scan(base, lo, hi, func(k, v []byte) bool { return fn(k[n:], v) }))
}

// Lookup reads key of another processor's state in this partition, as
// this batch sees it (its earlier events included, and the other
// processor's writes for this event when it runs before the caller).
// It is how a processor reads what another derives in the same
// transaction; what lives in other partitions is not visible here.
func (tx *Tx) Lookup(processor string, key []byte) ([]byte, bool, error) {
	i, ok := tx.t.indexOf(processor)
	if !ok {
		return nil, false, nil
	}
	v, ok, err := tx.t.read(i, tx.scratchKey(tx.t.prefixes[i], key))
	return v, ok, tx.fail(err)
}

// PartitionOf returns the events-topic partition of the events keyed
// key (the thing), as ingest's producer partitions them.
func (tx *Tx) PartitionOf(key []byte) int32 { return tx.t.partitionOf(key) }

// At sets the id base of what the call emits from now on to the timer
// of key (what the timer is for: a rule and a thing, a window) due at
// at: "<partition>/t<unix ms>.<hash of key>/<processor>/<seq>", seq
// starting again from 0. Tick calls it before emitting a timer's
// outputs, so a tick run again (after a crash) gives them the same ids,
// and two timers due at the same time, in one tick or in two, never
// share one.
func (tx *Tx) At(at time.Time, key string) {
	h := fnv.New64a()
	h.Write([]byte(key))
	src := make([]byte, 0, 48)
	src = strconv.AppendInt(src, int64(tx.partition), 10)
	src = append(src, '/', 't')
	src = strconv.AppendInt(src, at.UnixMilli(), 10)
	src = append(src, '.')
	tx.source = strconv.AppendUint(src, h.Sum64(), 36)
	tx.seq = 0
}

// Emit queues a record for production. The runtime adds the header
// iot.src = "<partition>/<offset>/<processor>/<seq>" (a deterministic id
// of the output: the same event always yields the same ids; see At for
// timers), so consumers can tell an output they have already seen.
func (tx *Tx) Emit(r *kgo.Record) {
	src := tx.bt.alloc(len(tx.source) + len(tx.name) + 2 + 20)[:0]
	src = append(append(append(src, tx.source...), '/'), tx.name...)
	src = append(src, '/')
	src = strconv.AppendInt(src, int64(tx.seq), 10)
	tx.seq++
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: schemas.HeaderSource, Value: src[:len(src):len(src)]})
	tx.bt.out = append(tx.bt.out, r)
}

// Source returns the events partition and offset a record emitted by a
// processor comes from, read from its iot.src header (see Tx.Emit);
// ok is false for a record without one, and for a timer's output
// ("<partition>/t<deadline>.<key hash>/...").
func Source(r *kgo.Record) (partition int32, offset int64, ok bool) {
	src := string(schemas.HeaderValue(r.Headers, schemas.HeaderSource))
	ps, rest, found := strings.Cut(src, "/")
	if !found {
		return 0, 0, false
	}
	offs, _, _ := strings.Cut(rest, "/")
	p, err1 := strconv.ParseInt(ps, 10, 32)
	o, err2 := strconv.ParseInt(offs, 10, 64)
	return int32(p), o, err1 == nil && err2 == nil
}

func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }
