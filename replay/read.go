package replay

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/schemas"
)

// Log is the events topic replay reads.
type Log struct {
	// Client makes franz-go clients of the log (eventlog.Log.Client).
	Client eventlog.NewClientFunc
	// Topic is the events topic (default schemas.DefaultTopics().Events).
	Topic string
}

func (l Log) topic() string {
	if l.Topic == "" {
		return schemas.DefaultTopics().Events
	}
	return l.Topic
}

// SeekSlack widens the offsets a time bound seeks to: a record's
// timestamp is stamped when ingest produces it, just after its receive
// time, on a clock that may step. Records in the slack are read and
// dropped by receive time.
const SeekSlack = time.Minute

// Event is one record of the events topic, decoded.
type Event struct {
	// Partition and Offset locate the record.
	Partition int32
	Offset    int64
	// Thing is the record key.
	Thing string
	// Envelope is the decoded headers (empty when Err is set).
	Envelope schemas.Envelope
	// Payload is the record value as received.
	Payload []byte
	// Headers are the record's headers as they are.
	Headers []kgo.RecordHeader
	// Timestamp is the record's timestamp (when ingest produced it).
	Timestamp time.Time
	// Err says why the envelope could not be decoded.
	Err error

	// rawKey is the record's key as read (nil: Thing's bytes).
	rawKey []byte
}

// key returns the record key: the bytes read, or Thing's.
func (e *Event) key() []byte {
	if e.rawKey != nil {
		return e.rawKey
	}
	return []byte(e.Thing)
}

// Time returns the event's receive time (the record's timestamp for an
// event whose envelope could not be decoded).
func (e *Event) Time() time.Time {
	if e.Err == nil && e.Envelope.ReceivedAt != 0 {
		return time.Unix(0, e.Envelope.ReceivedAt)
	}
	return e.Timestamp
}

// record returns the event as the record it was read from.
func (e *Event) record(topic string) *kgo.Record {
	return &kgo.Record{Topic: topic, Partition: e.Partition, Offset: e.Offset, Key: e.key(),
		Value: e.Payload, Headers: e.Headers, Timestamp: e.Timestamp}
}

// Range is the offsets of one partition a read covers: [From, To), To
// -1 when following the partition.
type Range struct {
	Partition int32
	From, To  int64
}

// Plan is what a read covers, found from the selection's bounds before
// reading.
type Plan struct {
	// Partitions is the events topic's partition count.
	Partitions int32
	// Ranges are the partitions to read, in partition order.
	Ranges []Range
}

// Records returns how many records the plan's bounded ranges hold (the
// progress total).
func (p Plan) Records() int64 {
	var n int64
	for _, r := range p.Ranges {
		if r.To > r.From {
			n += r.To - r.From
		}
	}
	return n
}

// PartitionOf returns the events partition of a thing's events, as
// ingest's producer partitions them (franz-go's default partitioner:
// murmur2 of the key, schemas.EventKey).
func PartitionOf(thing string, partitions int32) int32 {
	keyPartitioner.Lock()
	defer keyPartitioner.Unlock()
	return int32(keyPartitioner.p.Partition(&kgo.Record{Key: []byte(thing)}, int(partitions)))
}

// keyPartitioner is franz-go's default partitioner, made once (making
// one seeds a random source).
var keyPartitioner = struct {
	sync.Mutex
	p kgo.TopicPartitioner
}{p: kgo.StickyKeyPartitioner(nil).ForTopic("")}

// PlanRead finds the offsets sel covers: the thing's partition only, or
// every partition; From and To located with ListOffsets by time (never
// by scanning), To at most the last stable offset now.
func PlanRead(ctx context.Context, log Log, sel Selection) (Plan, error) {
	if err := sel.Validate(); err != nil {
		return Plan{}, err
	}
	topic := log.topic()
	cl, err := log.Client()
	if err != nil {
		return Plan{}, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	list := func(what string, f func() (kadm.ListedOffsets, error)) (map[int32]int64, error) {
		lo, err := f()
		if err == nil {
			err = lo.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("%s of %s: %w", what, topic, err)
		}
		out := map[int32]int64{}
		lo.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
		return out, nil
	}
	ends, err := list("end offsets", func() (kadm.ListedOffsets, error) { return adm.ListCommittedOffsets(ctx, topic) })
	if err != nil {
		return Plan{}, err
	}
	if len(ends) == 0 {
		return Plan{}, fmt.Errorf("topic %s not found on the log", topic)
	}
	starts, err := list("start offsets", func() (kadm.ListedOffsets, error) { return adm.ListStartOffsets(ctx, topic) })
	if err != nil {
		return Plan{}, err
	}
	var froms, tos map[int32]int64
	if !sel.From.IsZero() {
		ms := sel.From.Add(-SeekSlack).UnixMilli()
		if froms, err = list("offsets by time", func() (kadm.ListedOffsets, error) { return adm.ListOffsetsAfterMilli(ctx, ms, topic) }); err != nil {
			return Plan{}, err
		}
	}
	if !sel.To.IsZero() {
		ms := sel.To.Add(SeekSlack).UnixMilli()
		if tos, err = list("offsets by time", func() (kadm.ListedOffsets, error) { return adm.ListOffsetsAfterMilli(ctx, ms, topic) }); err != nil {
			return Plan{}, err
		}
	}
	plan := Plan{Partitions: int32(len(ends))}
	for p := range plan.Partitions {
		if sel.Thing != "" && p != PartitionOf(sel.Thing, plan.Partitions) {
			continue
		}
		r := Range{Partition: p, From: starts[p], To: ends[p]}
		if o, ok := froms[p]; ok && o > r.From {
			r.From = min(o, r.To)
		}
		if o, ok := tos[p]; ok && o >= 0 {
			r.To = max(min(o, r.To), r.From)
		}
		if sel.Follow {
			r.To = -1
		}
		plan.Ranges = append(plan.Ranges, r)
	}
	return plan, nil
}

// Counter counts the records a read went through (selected or not), for
// progress.
type Counter struct{ n atomic.Int64 }

// Load returns the count.
func (c *Counter) Load() int64 {
	if c == nil {
		return 0
	}
	return c.n.Load()
}

func (c *Counter) add() {
	if c != nil {
		c.n.Add(1)
	}
}

// errLimit ends a read that reached its limit.
var errLimit = errors.New("limit reached")

// followPoll is how often a followed partition at its end is read again.
const followPoll = 200 * time.Millisecond

// Read reads plan's ranges and passes every event sel selects to fn:
// merged across partitions by receive time (then partition and offset;
// a partition's own order is kept) when the plan is bounded, as they
// come when following. Records of aborted transactions are skipped. It
// returns when the ranges are read, sel.Limit events were passed, fn
// returns an error (ErrStop ends it without one) or ctx ends. read, when
// not nil, counts every record read.
func Read(parent context.Context, log Log, sel Selection, plan Plan, read *Counter, fn func(*Event) error) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	topic := log.topic()
	chans := make([]chan []*Event, len(plan.Ranges))
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var readErr error
	var fanIn chan []*Event
	if sel.Follow {
		fanIn = make(chan []*Event, 16)
	}
	for i, r := range plan.Ranges {
		ch := fanIn
		if ch == nil {
			ch = make(chan []*Event, 4)
			chans[i] = ch
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !sel.Follow {
				defer close(ch)
			}
			if err := readRange(ctx, log.Client, topic, r, &sel, read, ch); err != nil && ctx.Err() == nil {
				errMu.Lock()
				readErr = errors.Join(readErr, err)
				errMu.Unlock()
				cancel()
			}
		}()
	}
	if fanIn != nil {
		go func() { wg.Wait(); close(fanIn) }()
	}
	var err error
	if sel.Follow {
		var chunk []*Event
		err = deliver(sel.Limit, func() (*Event, bool) {
			for len(chunk) == 0 {
				select {
				case c, ok := <-fanIn:
					if !ok {
						return nil, false
					}
					chunk = c
				case <-ctx.Done():
					return nil, false
				}
			}
			ev := chunk[0]
			chunk = chunk[1:]
			return ev, true
		}, fn)
	} else {
		err = deliver(sel.Limit, newMerge(ctx, chans).next, fn)
	}
	cancel()
	wg.Wait()
	errMu.Lock()
	defer errMu.Unlock()
	switch {
	case readErr != nil:
		return readErr
	case parent.Err() != nil:
		return parent.Err()
	case errors.Is(err, errLimit), errors.Is(err, eventlog.ErrStop), errors.Is(err, context.Canceled):
		return nil
	}
	return err
}

// deliver passes events from next to fn until next is done, limit
// events were passed, or fn fails.
func deliver(limit int, next func() (*Event, bool), fn func(*Event) error) error {
	n := 0
	for {
		ev, ok := next()
		if !ok {
			return nil
		}
		if err := fn(ev); err != nil {
			return err
		}
		if n++; limit > 0 && n >= limit {
			return errLimit
		}
	}
}

// chunkMax is how many events a partition's reader passes on at once
// (one channel operation for them all).
const chunkMax = 128

// readRange reads one partition's range and sends the selected events to
// ch, in chunks: a chunk goes when it is full or the reader reached the
// partition's end (when following, it then polls the end for ever).
func readRange(ctx context.Context, newClient eventlog.NewClientFunc, topic string, r Range, sel *Selection, read *Counter, ch chan<- []*Event) error {
	pos := r.From
	var chunk []*Event
	send := func() error {
		if len(chunk) == 0 {
			return nil
		}
		select {
		case ch <- chunk:
			chunk = make([]*Event, 0, chunkMax)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		if r.To >= 0 && pos >= r.To {
			return send()
		}
		end, err := eventlog.ReadPartition(ctx, newClient, topic, r.Partition, pos, func(rec *kgo.Record) error {
			if r.To >= 0 && rec.Offset >= r.To {
				return eventlog.ErrStop
			}
			pos = rec.Offset + 1
			read.add()
			ev := decode(rec)
			if ev.Err == nil && (!sel.matches(ev.Thing, &ev.Envelope) || !sel.inTime(ev.Envelope.ReceivedAt)) {
				return nil
			}
			if ev.Err != nil && sel.Thing != "" && ev.Thing != sel.Thing {
				return nil
			}
			if chunk = append(chunk, ev); len(chunk) >= chunkMax {
				return send()
			}
			return nil
		})
		if err == nil {
			err = send()
		}
		if err != nil {
			return fmt.Errorf("read %s partition %d: %w", topic, r.Partition, err)
		}
		if r.To >= 0 {
			return nil
		}
		pos = max(pos, end)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(followPoll):
		}
	}
}

// decode turns a record into an Event; a record whose envelope cannot
// be decoded keeps the reason in Err.
func decode(rec *kgo.Record) *Event {
	ev := &Event{Partition: rec.Partition, Offset: rec.Offset, Thing: string(rec.Key), Payload: rec.Value,
		Headers: rec.Headers, Timestamp: rec.Timestamp, rawKey: rec.Key}
	ev.Envelope, ev.Err = schemas.DecodeEnvelope(rec.Headers)
	return ev
}

// merge orders the events of several partitions by receive time, then
// partition and offset, keeping each partition's own order.
type merge struct {
	ctx   context.Context
	chans []chan []*Event
	h     eventHeap
	init  bool
}

func newMerge(ctx context.Context, chans []chan []*Event) *merge {
	return &merge{ctx: ctx, chans: chans}
}

// head is a partition's next events: ev, then rest.
type head struct {
	ev   *Event
	rest []*Event
	ch   int
}

type eventHeap []head

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	a, b := h[i].ev, h[j].ev
	if ta, tb := a.Time().UnixNano(), b.Time().UnixNano(); ta != tb {
		return ta < tb
	}
	if a.Partition != b.Partition {
		return a.Partition < b.Partition
	}
	return a.Offset < b.Offset
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(head)) }
func (h *eventHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// pull pushes partition i's next chunk, unless it is done.
func (m *merge) pull(i int) {
	for {
		select {
		case evs, ok := <-m.chans[i]:
			if !ok {
				return
			}
			if len(evs) > 0 {
				heap.Push(&m.h, head{evs[0], evs[1:], i})
				return
			}
		case <-m.ctx.Done():
			return
		}
	}
}

func (m *merge) next() (*Event, bool) {
	if !m.init {
		m.init = true
		for i := range m.chans {
			m.pull(i)
		}
	}
	if m.ctx.Err() != nil || m.h.Len() == 0 {
		return nil, false
	}
	top := &m.h[0]
	ev := top.ev
	if len(top.rest) > 0 {
		// The partition's next event takes its place.
		top.ev, top.rest = top.rest[0], top.rest[1:]
		heap.Fix(&m.h, 0)
		return ev, true
	}
	x := heap.Pop(&m.h).(head)
	m.pull(x.ch)
	return ev, true
}
