package ledger

import (
	"fmt"
	"slices"
	"testing"
)

// step is one operation on a Partition and what it must give.
type step struct {
	op     string // read, done, seen, state
	offset int64
	key    string
	want   Status  // read
	seen   bool    // seen
	next   int64   // state
	end    int64   // state
	pend   []int64 // state: pending offsets of the record a flush writes
}

func read(o int64, key string, want Status) step {
	return step{op: "read", offset: o, key: key, want: want}
}
func done(o int64) step               { return step{op: "done", offset: o} }
func seen(key string, want bool) step { return step{op: "seen", key: key, seen: want} }
func state(next, end int64, pend ...int64) step {
	return step{op: "state", next: next, end: end, pend: pend}
}

func TestPartition(t *testing.T) {
	tests := []struct {
		name   string
		loaded *record // the ledger record Load found, if any
		recent int
		steps  []step
	}{
		{name: "done in order moves the resume offset", steps: []step{
			read(5, "a", Run), read(6, "b", Run), state(5, 5),
			done(5), state(6, 6), done(6), state(7, 7), seen("a", true), seen("b", true), seen("c", false),
		}},
		{name: "done out of order: the slow one stays pending", steps: []step{
			read(0, "a", Run), read(1, "b", Run), read(2, "c", Run), read(3, "d", Run),
			done(2), done(1), state(0, 3, 0), done(3), state(0, 4, 0), done(0), state(4, 4),
		}},
		{name: "offset gaps (control records, aborted records)", steps: []step{
			read(10, "a", Run), read(13, "b", Run), read(20, "c", Run),
			done(13), state(10, 14, 10), done(10), state(14, 14), done(20), state(21, 21),
		}},
		{name: "a key done before repeats at a new offset", steps: []step{
			read(0, "a", Run), done(0), read(1, "a", Executed), state(2, 2),
		}},
		{name: "a key in flight repeats: done with the first", steps: []step{
			read(0, "a", Run), read(1, "b", Run), read(2, "a", Duplicate), done(1), state(0, 2, 0),
			done(0), state(3, 3), seen("a", true),
		}},
		{name: "records with no effect are never deduplicated", steps: []step{
			read(0, "", Run), done(0), read(1, "", Run), done(1), state(2, 2), seen("", false),
		}},
		{name: "a record read twice is not registered again", steps: []step{
			read(0, "a", Run), read(0, "a", Duplicate), done(0), state(1, 1),
		}},
		{name: "done twice or for an unread offset changes nothing", steps: []step{
			read(0, "a", Run), read(1, "b", Run), done(1), done(1), done(7), state(0, 2, 0),
		}},
		{name: "recent keys are bounded", recent: 2, steps: []step{
			read(0, "a", Run), done(0), read(1, "b", Run), done(1), read(2, "c", Run), done(2),
			seen("a", false), seen("b", true), seen("c", true), read(3, "a", Run),
		}},
		{name: "loaded: resume, skip what was done above the resume offset", loaded: &record{next: 10, end: 15, pending: []int64{10, 13}}, steps: []step{
			state(10, 15, 10, 13),
			read(10, "a", Run), read(11, "b", Executed), read(12, "c", Executed), state(10, 15, 10, 13),
			read(13, "d", Run), read(14, "e", Executed), read(15, "f", Run),
			done(13), state(10, 15, 10), done(10), state(15, 15), done(15), state(16, 16),
			seen("b", true), seen("e", true),
		}},
		{name: "loaded: what is not read again keeps its state in the next flush", loaded: &record{next: 10, end: 20, pending: []int64{10, 18}}, steps: []step{
			read(10, "a", Run), done(10), state(11, 20, 18),
			read(11, "b", Executed), state(12, 20, 18),
		}},
		{name: "loaded: records below the resume offset are done", loaded: &record{next: 10, end: 10}, steps: []step{
			read(8, "x", Executed), read(9, "y", Executed), state(10, 10), seen("x", true), read(10, "z", Run),
		}},
		{name: "loaded: a key done above the resume offset repeats later", loaded: &record{next: 3, end: 6, pending: []int64{3}}, steps: []step{
			read(3, "a", Run), read(4, "b", Executed), read(5, "c", Executed), read(9, "b", Executed),
			done(3), state(10, 10),
		}},
		{name: "loaded: a duplicate waiting at the crash waits again", loaded: &record{next: 0, end: 3, pending: []int64{0, 2}}, steps: []step{
			read(0, "a", Run), read(1, "b", Executed), read(2, "a", Duplicate), state(0, 3, 0, 2), done(0), state(3, 3),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recent := tt.recent
			if recent == 0 {
				recent = 100
			}
			p := newPartition(0, []byte("g/t/0"), recent)
			if tt.loaded != nil {
				p.load(*tt.loaded)
			}
			for i, s := range tt.steps {
				where := fmt.Sprintf("step %d (%s %d %q)", i, s.op, s.offset, s.key)
				switch s.op {
				case "read":
					if got := p.Read(s.offset, s.key); got != s.want {
						t.Fatalf("%s: Read = %v, want %v", where, got, s.want)
					}
				case "done":
					p.Done(s.offset)
				case "seen":
					if got := p.Seen(s.key); got != s.seen {
						t.Fatalf("%s: Seen = %v, want %v", where, got, s.seen)
					}
				case "state":
					p.flushed = 0
					p.version = max(p.version, 1)
					r, _, ok := p.snapshot()
					if !ok {
						t.Fatalf("%s: nothing to flush", where)
					}
					if r.next != s.next || r.end != s.end || !slices.Equal(r.pending, s.pend) {
						t.Fatalf("%s: record {next %d, end %d, pending %v}, want {%d, %d, %v}", where, r.next, r.end, r.pending, s.next, s.end, s.pend)
					}
					if next, _ := p.Resume(); next != s.next {
						t.Fatalf("%s: Resume = %d, want %d", where, next, s.next)
					}
				}
			}
		})
	}
}

func TestPartitionFlushesOnlyChanges(t *testing.T) {
	p := newPartition(0, []byte("k"), 10)
	if _, _, ok := p.snapshot(); ok {
		t.Fatal("an empty partition has something to flush")
	}
	p.Read(0, "a")
	if _, _, ok := p.snapshot(); ok {
		t.Fatal("a record read but not done has something to flush")
	}
	p.Done(0)
	_, v, ok := p.snapshot()
	if !ok {
		t.Fatal("nothing to flush after Done")
	}
	p.flushedAt(v)
	if _, _, ok := p.snapshot(); ok {
		t.Fatal("something to flush after flushing")
	}
	p.Read(1, "b")
	p.Done(1)
	if _, _, ok := p.snapshot(); !ok {
		t.Fatal("nothing to flush after a new Done")
	}
}

func BenchmarkPartitionReadDone(b *testing.B) {
	keys := make([]string, 1<<16)
	for i := range keys {
		keys[i] = fmt.Sprintf("%d/%d/rule/0", i%8, i)
	}
	p := newPartition(0, []byte("k"), DefaultRecent)
	b.ReportAllocs()
	var o int64
	for b.Loop() {
		// One in four records finishes late, as with a slow target.
		p.Read(o, keys[o%int64(len(keys))])
		if o%4 != 0 {
			p.Done(o)
		}
		if o >= 8 && (o-8)%4 == 0 {
			p.Done(o - 8)
		}
		o++
	}
}
