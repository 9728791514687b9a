package webhook

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// offsets tracks the records read from each partition and what can be
// committed: the offset after the longest prefix, in log order, of records
// that are done (delivered, dead-lettered or skipped). Records finish in
// any order; commits only move forward over finished ones.
type offsets struct {
	mu    sync.Mutex
	parts map[topicPartition]*partOffsets
}

type topicPartition struct {
	topic     string
	partition int32
}

// partOffsets is one partition's records in flight, in offset order.
type partOffsets struct {
	pending   []*ticket // pending[head:] are not yet committed-over
	head      int
	next      kgo.EpochOffset // offset after the done prefix; Offset -1 if none yet
	committed kgo.EpochOffset // last offset committed (or -1)
	dead      bool            // revoked or lost: its tickets no longer count
}

// ticket is one record's place in its partition.
type ticket struct {
	o      *offsets
	p      *partOffsets
	offset int64
	epoch  int32
	done   bool
}

func newOffsets() *offsets {
	return &offsets{parts: map[topicPartition]*partOffsets{}}
}

// add registers a record read from the log. Records of a partition must be
// added in offset order.
func (o *offsets) add(r *kgo.Record) *ticket {
	o.mu.Lock()
	defer o.mu.Unlock()
	tp := topicPartition{r.Topic, r.Partition}
	p := o.parts[tp]
	if p == nil {
		p = &partOffsets{next: kgo.EpochOffset{Epoch: -1, Offset: -1}, committed: kgo.EpochOffset{Epoch: -1, Offset: -1}}
		o.parts[tp] = p
	}
	t := &ticket{o: o, p: p, offset: r.Offset, epoch: r.LeaderEpoch}
	p.pending = append(p.pending, t)
	return t
}

// finish marks the ticket's record done and advances its partition's
// committable offset over the done prefix.
func (t *ticket) finish() {
	t.o.mu.Lock()
	defer t.o.mu.Unlock()
	if t.done {
		return
	}
	t.done = true
	p := t.p
	if p.dead {
		return
	}
	for p.head < len(p.pending) && p.pending[p.head].done {
		d := p.pending[p.head]
		p.pending[p.head] = nil
		p.next = kgo.EpochOffset{Epoch: d.epoch, Offset: d.offset + 1}
		p.head++
	}
	if p.head == len(p.pending) {
		p.pending, p.head = p.pending[:0], 0
	} else if p.head > 1024 && p.head > len(p.pending)/2 {
		n := copy(p.pending, p.pending[p.head:])
		clear(p.pending[n:])
		p.pending, p.head = p.pending[:n], 0
	}
}

// dead reports whether the ticket's partition was revoked or lost.
func (t *ticket) dead() bool {
	t.o.mu.Lock()
	defer t.o.mu.Unlock()
	return t.p.dead
}

// uncommitted returns the committable offsets newer than the last commit.
func (o *offsets) uncommitted() map[string]map[int32]kgo.EpochOffset {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out map[string]map[int32]kgo.EpochOffset
	for tp, p := range o.parts {
		if p.next.Offset > p.committed.Offset {
			out = addOffset(out, tp, p.next)
		}
	}
	return out
}

// committed records that offs were committed.
func (o *offsets) committed(offs map[string]map[int32]kgo.EpochOffset) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for topic, parts := range offs {
		for partition, eo := range parts {
			if p := o.parts[topicPartition{topic, partition}]; p != nil && eo.Offset > p.committed.Offset {
				p.committed = eo
			}
		}
	}
}

// remove forgets the given partitions, marking their tickets dead, and
// returns their committable offsets newer than the last commit.
func (o *offsets) remove(revoked map[string][]int32) map[string]map[int32]kgo.EpochOffset {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out map[string]map[int32]kgo.EpochOffset
	for topic, parts := range revoked {
		for _, partition := range parts {
			tp := topicPartition{topic, partition}
			p := o.parts[tp]
			if p == nil {
				continue
			}
			p.dead = true
			delete(o.parts, tp)
			if p.next.Offset > p.committed.Offset {
				out = addOffset(out, tp, p.next)
			}
		}
	}
	return out
}

func addOffset(m map[string]map[int32]kgo.EpochOffset, tp topicPartition, eo kgo.EpochOffset) map[string]map[int32]kgo.EpochOffset {
	if m == nil {
		m = map[string]map[int32]kgo.EpochOffset{}
	}
	if m[tp.topic] == nil {
		m[tp.topic] = map[int32]kgo.EpochOffset{}
	}
	m[tp.topic][tp.partition] = eo
	return m
}
