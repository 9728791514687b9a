// Package processors is the partition-task runtime: a consumer group over
// the events topic, one task per partition, each with its Pebble state and
// the next offset committed atomically with that state. Processors
// (processors/shadow, processors/rules, ...) plug in through the Processor
// interface; the runtime never imports them.
package processors

import (
	"context"
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
// A processor must be deterministic given its state and the event (use
// tx.Now, never time.Now) so that a rebuild from the log gives the same
// state.
type Processor interface {
	// Name is the processor's stable name; it namespaces its state keys.
	Name() string
	// Process applies one event. tx and ev are valid only during the
	// call (the runtime reuses them); values taken from them (strings,
	// the decoded payload) may be kept.
	Process(ctx context.Context, tx *Tx, ev *Event) error
}

// Ticker is implemented by processors with timers. Tick is called per
// partition at the runtime's tick interval, between the partition's
// batches, with state access and emit like Process; what it does
// commits like a batch.
type Ticker interface {
	Tick(ctx context.Context, tx *Tx, now time.Time) error
}

// Restorer is implemented by processors that keep a changelog topic of
// their own, so that their state outlives the events topic's retention.
// A partition task that starts with no state calls Restore before its
// first event: the processor puts back, through tx, what its changelog
// holds for tx's partition. The task then applies the partition's events
// from the start of what the log still holds, so Restore must also leave
// what the processor needs to skip the events its restored state already
// reflects.
type Restorer interface {
	// Changelog is the processor's changelog topic. The runtime produces
	// the records the processor emits to it to the partition of the
	// events they come from (when the topic has that partition), so that
	// a restore reads one partition of it, not all.
	Changelog() string
	// Restore restores tx's partition and returns how many entries it
	// put back; read reads the changelog (the partition of it that holds
	// tx's partition's records, or all of it).
	Restore(ctx context.Context, tx *Tx, read ReadTopic) (int, error)
}

// ReadTopic reads topic from its start up to the end it has when called,
// passing each record to fn, in order within a partition.
type ReadTopic func(ctx context.Context, topic string, fn func(*kgo.Record) error) error

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
	// Envelope is the decoded record headers.
	Envelope schemas.Envelope

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

// Store is the key-value state a Tx reads and writes. The runtime backs it
// with a Pebble batch; tests may use NewMemStore.
type Store interface {
	Get(key []byte) ([]byte, bool, error)
	Set(key, value []byte) error
	Delete(key []byte) error
	// Scan calls fn for each key in [lower, upper) in order, until fn
	// returns false. The slices are valid only during the call.
	Scan(lower, upper []byte, fn func(key, value []byte) bool) error
}

// Tx is a processor's view of one partition during one event (or tick):
// its own key space of the partition's state, the records it emits, its
// memo, and the clock. A Tx is valid only during the call it is passed
// to.
type Tx struct {
	store     Store
	prefix    []byte
	partition int32
	now       time.Time
	dryRun    bool
	bt        *batch
	source    []byte
	seq       int
	memo      *Memo
	// kbuf holds the prefixed key of a Get, Set or Delete (the store
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

// key returns a fresh prefixed key (for callers that hold two at once).
func (tx *Tx) key(k []byte) []byte {
	out := make([]byte, 0, len(tx.prefix)+len(k))
	return append(append(out, tx.prefix...), k...)
}

// scratchKey returns the prefixed key in tx's buffer, valid until the
// next call.
func (tx *Tx) scratchKey(k []byte) []byte {
	tx.kbuf = append(append(tx.kbuf[:0], tx.prefix...), k...)
	return tx.kbuf
}

// Get reads a key of this processor's state in this partition. The
// value is the caller's.
func (tx *Tx) Get(key []byte) ([]byte, bool, error) { return tx.store.Get(tx.scratchKey(key)) }

// Set writes a key of this processor's state in this partition.
func (tx *Tx) Set(key, value []byte) error { return tx.store.Set(tx.scratchKey(key), value) }

// Delete removes a key of this processor's state in this partition.
func (tx *Tx) Delete(key []byte) error { return tx.store.Delete(tx.scratchKey(key)) }

// Scan iterates this processor's keys in [lower, upper) of this
// partition; keys are passed without the partition/processor prefix.
// A nil upper means "to the end of this processor's key space".
func (tx *Tx) Scan(lower, upper []byte, fn func(key, value []byte) bool) error {
	lo := tx.key(lower)
	var hi []byte
	if upper == nil {
		hi = prefixEnd(tx.prefix)
	} else {
		hi = tx.key(upper)
	}
	n := len(tx.prefix)
	return tx.store.Scan(lo, hi, func(k, v []byte) bool { return fn(k[n:], v) })
}

// Emit queues a record for production. The runtime adds the header
// iot.src = "<partition>/<offset>/<proc>/<seq>" (a deterministic id of
// the output: the same event always yields the same ids), so consumers
// can drop the duplicates a crash between produce and commit can cause.
func (tx *Tx) Emit(r *kgo.Record) {
	src := tx.bt.alloc(len(tx.source) + 1 + 20)[:0]
	src = append(append(src, tx.source...), '/')
	src = appendInt(src, int64(tx.seq))
	tx.seq++
	// Changelog topics are partitioned like the events (see Restorer);
	// the partitioner of every other topic ignores it.
	r.Partition = tx.partition
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: schemas.HeaderSource, Value: src[:len(src):len(src)]})
	tx.bt.out = append(tx.bt.out, r)
}

// Source returns the events partition and offset a record emitted by a
// processor comes from, read from its iot.src header (see Tx.Emit);
// ok is false for a record without one.
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

func appendInt(b []byte, n int64) []byte {
	if n == 0 {
		return append(b, '0')
	}
	var tmp [20]byte
	i := len(tmp)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		tmp[i] = '-'
	}
	return append(b, tmp[i:]...)
}
