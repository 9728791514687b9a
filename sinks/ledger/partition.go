package ledger

import (
	"slices"
	"sync"
)

// Status is what Read found for a record.
type Status int

const (
	// Run: the record's effect is not done. Execute it, then call Done
	// (or leave it undone: it is read again after a restart or a move).
	Run Status = iota
	// Executed: the record is done already (a record below the resume
	// offset or recorded done above it), or an earlier record with the
	// same key is. Nothing is to be executed; the record counts as done.
	Executed
	// Duplicate: an earlier record with the same key is being executed;
	// this one is done when that one is. Nothing is to be executed.
	Duplicate
)

func (s Status) String() string {
	switch s {
	case Run:
		return "run"
	case Executed:
		return "executed"
	case Duplicate:
		return "duplicate"
	}
	return "unknown"
}

// Partition is the ledger of one actions partition: which of its records
// are done (executed, dead-lettered or skipped) and the keys of the
// recent ones. It is safe for concurrent use.
type Partition struct {
	id  int32
	key []byte // the ledger record key

	mu sync.Mutex
	// next: every record below is done; -1 before the first record when
	// the ledger had nothing. end: the offset after the highest done
	// record (end >= next).
	next, end int64
	// loaded is the record Load found: offsets in [loaded.next,
	// loaded.end) not yet read again are done unless pending there.
	loaded    record
	hasLoaded bool
	// readTo is the offset after the last record Read (-1 before any).
	readTo int64
	// open[head:] are the records read at or above next, in offset order.
	open []slot
	head int
	// running holds the records being executed by key, with the records
	// waiting on them.
	running map[string]*run
	recent  ring
	// version counts changes; flushed is the version last written.
	version, flushed uint64
}

// slot is one record read: its offset, whether it is done, and its key
// while it is being executed (the first record of the key).
type slot struct {
	offset int64
	key    string
	done   bool
}

// run is a record being executed and the later records with its key.
type run struct {
	offset    int64
	followers []int64
}

func newPartition(id int32, key []byte, recent int) *Partition {
	return &Partition{
		id: id, key: key, next: -1, end: -1, readTo: -1,
		running: map[string]*run{},
		recent:  newRing(recent),
	}
}

// load sets the state a ledger record describes.
func (p *Partition) load(r record) {
	p.loaded, p.hasLoaded = r, true
	p.next, p.end = r.next, r.end
}

// ID returns the actions partition this ledger is for.
func (p *Partition) ID() int32 { return p.id }

// Resume returns the offset to resume reading at (every record below it
// is done), and false when the ledger holds nothing for the partition
// yet (then read from where the consumer group left off).
func (p *Partition) Resume() (int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next, p.hasLoaded
}

// Seen reports whether a record with key is done and still among the
// recent keys (the last Options.Recent done). The empty key is never
// seen.
func (p *Partition) Seen(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return key != "" && p.recent.has(key)
}

// Read registers a record read from the actions partition and says
// whether its effect is to be executed. Records must be read in offset
// order (gaps allowed); one at or below an offset already read is
// reported Duplicate and not registered again. key is the record's
// idempotency key, or "" for a record with no effect of this executor
// (it is then neither deduplicated nor remembered); such a record is
// Run: call Done for it at once.
func (p *Partition) Read(offset int64, key string) Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	if offset < p.readTo {
		return Duplicate
	}
	p.readTo = offset + 1
	if p.next < 0 {
		// Nothing recorded: what came before the first record read is
		// not this ledger's to redo.
		p.next, p.end = offset, offset
	}
	if p.loadedDone(offset) || key != "" && p.recent.has(key) {
		if key != "" && !p.recent.has(key) {
			p.recent.add(key)
		}
		if offset >= p.next {
			p.open = append(p.open, slot{offset: offset, done: true})
			p.end = max(p.end, offset+1)
			p.advance()
			p.version++
		}
		return Executed
	}
	if key == "" {
		p.open = append(p.open, slot{offset: offset})
		return Run
	}
	if r := p.running[key]; r != nil {
		p.open = append(p.open, slot{offset: offset})
		r.followers = append(r.followers, offset)
		return Duplicate
	}
	p.open = append(p.open, slot{offset: offset, key: key})
	p.running[key] = &run{offset: offset}
	return Run
}

// loadedDone reports whether the loaded record says the record at
// offset is done.
func (p *Partition) loadedDone(offset int64) bool {
	if !p.hasLoaded {
		return false
	}
	l := p.loaded
	if offset < l.next {
		return true
	}
	if offset >= l.end {
		return false
	}
	_, pending := slices.BinarySearch(l.pending, offset)
	return !pending
}

// Done records that the record at offset (registered by Read) is done,
// with the records that wait on it (same key). Done for an offset not
// read, or done already, does nothing.
func (p *Partition) Done(offset int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key, ok := p.markDone(offset)
	if !ok {
		return
	}
	if key != "" {
		if r := p.running[key]; r != nil && r.offset == offset {
			for _, f := range r.followers {
				p.markDone(f)
			}
			delete(p.running, key)
		}
		p.recent.add(key)
	}
	p.advance()
	p.version++
}

// markDone marks the open record at offset done and returns the key it
// was running under; false if there is no such record not yet done.
func (p *Partition) markDone(offset int64) (string, bool) {
	open := p.open[p.head:]
	i, found := slices.BinarySearchFunc(open, offset, func(s slot, o int64) int {
		switch {
		case s.offset < o:
			return -1
		case s.offset > o:
			return 1
		}
		return 0
	})
	if !found || open[i].done {
		return "", false
	}
	key := open[i].key
	open[i].done, open[i].key = true, ""
	p.end = max(p.end, offset+1)
	return key, true
}

// advance moves next over the done records at the head.
func (p *Partition) advance() {
	for p.head < len(p.open) && p.open[p.head].done {
		p.next = max(p.next, p.open[p.head].offset+1)
		p.head++
	}
	switch {
	case p.head == len(p.open):
		p.open, p.head = p.open[:0], 0
	case p.head > 1024 && p.head > len(p.open)/2:
		n := copy(p.open, p.open[p.head:])
		p.open, p.head = p.open[:n], 0
	}
}

// snapshot returns the record describing the current state and its
// version, or false when nothing changed since the last flush.
func (p *Partition) snapshot() (record, uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.version == p.flushed || p.next < 0 {
		return record{}, 0, false
	}
	r := record{next: p.next, end: p.end}
	for _, s := range p.open[p.head:] {
		if s.offset >= p.end {
			break
		}
		if !s.done {
			r.pending = append(r.pending, s.offset)
		}
	}
	// Loaded records not read again yet keep what the loaded record said.
	if p.hasLoaded {
		from := max(p.readTo, p.next)
		i, _ := slices.BinarySearch(p.loaded.pending, from)
		for _, o := range p.loaded.pending[i:] {
			if o >= p.end {
				break
			}
			r.pending = append(r.pending, o)
		}
	}
	return r, p.version, true
}

// flushedAt records that the state of version was written.
func (p *Partition) flushedAt(version uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.flushed = max(p.flushed, version)
}

// ring holds the last keys added (a key added twice counts twice).
type ring struct {
	keys  []string
	pos   int
	count map[string]int
}

func newRing(n int) ring {
	return ring{keys: make([]string, 0, n), count: map[string]int{}}
}

func (r *ring) has(key string) bool { return r.count[key] > 0 }

func (r *ring) add(key string) {
	if cap(r.keys) == 0 {
		return
	}
	if len(r.keys) < cap(r.keys) {
		r.keys = append(r.keys, key)
	} else {
		old := r.keys[r.pos]
		if r.count[old]--; r.count[old] <= 0 {
			delete(r.count, old)
		}
		r.keys[r.pos] = key
		r.pos = (r.pos + 1) % len(r.keys)
	}
	r.count[key]++
}
