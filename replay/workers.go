package replay

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
)

// A step is one unit of an Engine's work, emitted as a whole and in the
// order steps were made: a segment (held events, a job per partition) or
// a tick (a job per partition seen so far).
type step struct {
	// pos places the step among the events: 2n for a segment whose
	// last event is the n-th added (its i-th event, 0-based, is at
	// pos-2*(len(evs)-1-i)), 2n+1 for a tick after n events. Steps are
	// made with increasing positions.
	pos int64
	// evs are a segment's events in order (nil for a tick); byPart its
	// jobs by partition.
	evs    []*Event
	byPart map[int32]*job
	// jobs are the step's jobs in partition order.
	jobs []*job
	// left counts the jobs not yet run; done is closed when none is.
	left atomic.Int32
	done chan struct{}
}

// A job is one partition's part of a step, run by the partition's
// worker: the partition's events of a segment (a batch), or its tick.
type job struct {
	st  *step
	ctx context.Context
	p   int32
	evs []*Event  // nil for a tick
	now time.Time // the task's clock
	out []*kgo.Record
	err error
	// outs are the rule outputs read from out when the step is emitted,
	// k the next one to emit.
	outs []Output
	k    int
}

// Bounds of the work sent and not yet emitted: Add waits for the oldest
// step past them (memory stays bounded, and so does the time outputs
// wait).
const (
	maxHeld  = 4 * segmentMax
	maxSteps = 64
)

// work runs the jobs of a worker's partitions, in the order sent.
func (e *Engine) work(jobs <-chan *job) {
	defer e.wg.Done()
	var recs recordBuf
	for j := range jobs {
		if !e.failed.Load() {
			e.run(j, &recs)
		}
		if j.st.left.Add(-1) == 0 {
			close(j.st.done)
		}
	}
}

func (e *Engine) run(j *job, recs *recordBuf) {
	var err error
	if j.evs == nil {
		if j.out, err = e.h.TickAt(j.ctx, j.p, j.now); err != nil {
			err = fmt.Errorf("replay tick of partition %d: %w", j.p, err)
		}
	} else if j.out, err = e.h.RecordsAt(j.ctx, j.now, recs.of(j.evs, e.topics.Events), recs.envs); err != nil {
		err = fmt.Errorf("replay partition %d: %w", j.p, err)
	}
	if err != nil {
		j.err = err
		e.failed.Store(true)
	}
}

// recordBuf holds a worker's records of the events it runs, and their
// envelopes as the reader decoded them, reused from one batch to the
// next: the harness keeps neither (a dead letter copies the record's
// fields; their bytes are the event's).
type recordBuf struct {
	slab []kgo.Record
	ptrs []*kgo.Record
	envs []*schemas.Envelope
}

// of returns evs as the records they were read from, valid until the
// next call.
func (b *recordBuf) of(evs []*Event, topic string) []*kgo.Record {
	if cap(b.slab) < len(evs) {
		b.slab = make([]kgo.Record, len(evs))
		b.ptrs = make([]*kgo.Record, len(evs))
		b.envs = make([]*schemas.Envelope, len(evs))
		for i := range b.slab {
			b.ptrs[i] = &b.slab[i]
		}
	}
	b.envs = b.envs[:len(evs)]
	for i, ev := range evs {
		// Only these fields are ever set: the others stay zero.
		r := &b.slab[i]
		r.Topic, r.Partition, r.Offset, r.Key = topic, ev.Partition, ev.Offset, ev.key()
		r.Value, r.Headers, r.Timestamp = ev.Payload, ev.Headers, ev.Timestamp
		b.envs[i] = &ev.Envelope
	}
	return b.ptrs[:len(evs)]
}

// send hands st's jobs to the workers of their partitions and emits the
// steps that are done (all of them, st included, when tracing).
func (e *Engine) send(st *step) error {
	st.done = make(chan struct{})
	st.left.Store(int32(len(st.jobs)))
	if len(st.jobs) == 0 {
		close(st.done)
	}
	for _, j := range st.jobs {
		e.workers[int(j.p)%len(e.workers)] <- j
	}
	e.pending = append(e.pending, st)
	e.held += len(st.evs)
	return e.drain(e.before != nil)
}

// drain emits the steps that are done, oldest first, waiting for them
// when all is set or while too much is held.
func (e *Engine) drain(all bool) error {
	for len(e.pending) > 0 {
		st := e.pending[0]
		if all || e.held > maxHeld || len(e.pending) > maxSteps {
			<-st.done
		} else {
			select {
			case <-st.done:
			default:
				return nil
			}
		}
		e.pending[0] = nil
		e.pending = e.pending[1:]
		e.held -= len(st.evs)
		if err := e.emitStep(st); err != nil {
			e.err = err
			e.failed.Store(true)
			return err
		}
	}
	return nil
}

// emitStep emits what a step's jobs emitted: a segment's outputs in the
// order of its events, a tick's per rule in load order, then by
// deadline (or window end), then thing.
func (e *Engine) emitStep(st *step) error {
	e.emitting = st.pos
	defer func() { e.done = st.pos }()
	for _, j := range st.jobs {
		if j.err != nil {
			return j.err
		}
	}
	if st.evs == nil {
		var outs []Output
		for _, j := range st.jobs {
			for _, r := range j.out {
				if o, ok := e.output(r); ok {
					outs = append(outs, o)
				}
			}
		}
		slices.SortStableFunc(outs, func(a, b Output) int {
			if d := e.index[a.Rule] - e.index[b.Rule]; d != 0 {
				return d
			}
			if c := a.At.Compare(b.At); c != 0 {
				return c
			}
			return strings.Compare(a.Thing, b.Thing)
		})
		for _, o := range outs {
			if err := e.emit(o); err != nil {
				return err
			}
		}
		return nil
	}
	for _, j := range st.jobs {
		for _, r := range j.out {
			if o, ok := e.output(r); ok {
				j.outs = append(j.outs, o)
			}
		}
	}
	// A partition's outputs come in the order of its events: walk them
	// beside the segment's events.
	for i, ev := range st.evs {
		e.emitting = st.pos - 2*int64(len(st.evs)-1-i)
		j := st.byPart[ev.Partition]
		for ; j.k < len(j.outs); j.k++ {
			o := j.outs[j.k]
			off, ok := eventOffset(o.Source, ev.Partition)
			if !ok || off < ev.Offset {
				continue // not from an event of the segment (none is)
			}
			if off > ev.Offset {
				break
			}
			o.Event, o.At = ev, ev.Time()
			if err := e.emit(o); err != nil {
				return err
			}
		}
	}
	return nil
}

// eventOffset returns the offset of an event output's source,
// "<partition>/<offset>", when it is partition p's.
func eventOffset(source string, p int32) (int64, bool) {
	ps, os, ok := strings.Cut(source, "/")
	if !ok {
		return 0, false
	}
	if n, err := strconv.ParseInt(ps, 10, 32); err != nil || int32(n) != p {
		return 0, false
	}
	off, err := strconv.ParseInt(os, 10, 64)
	return off, err == nil
}
