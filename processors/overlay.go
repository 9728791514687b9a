package processors

import (
	"bytes"
	"sort"
)

// overlay holds the writes of one processor call, so that a call that
// fails leaves nothing: the runtime applies them to the batch when the
// call returns nil and drops them otherwise. Reads see them first.
//
// Most calls write a few keys, so entries are found by a linear scan;
// past overlayScan entries an index map is built.
type overlay struct {
	ents []ovEntry
	// buf holds every key and value of the entries (offsets into it stay
	// valid as it grows).
	buf []byte
	idx map[string]int
}

type ovEntry struct {
	k0, k1, v0, v1 int
	del            bool
}

// overlayScan is the entry count up to which entries are found by a
// linear scan.
const overlayScan = 16

func (o *overlay) reset() {
	o.ents = o.ents[:0]
	o.buf = o.buf[:0]
	o.idx = nil
}

func (o *overlay) key(e *ovEntry) []byte   { return o.buf[e.k0:e.k1] }
func (o *overlay) value(e *ovEntry) []byte { return o.buf[e.v0:e.v1] }

func (o *overlay) find(k []byte) int {
	if o.idx != nil {
		if i, ok := o.idx[string(k)]; ok {
			return i
		}
		return -1
	}
	for i := range o.ents {
		if bytes.Equal(o.key(&o.ents[i]), k) {
			return i
		}
	}
	return -1
}

// get returns the call's write of k: its value, or del for a delete; ok
// is false when the call did not write k.
func (o *overlay) get(k []byte) (v []byte, del, ok bool) {
	if len(o.ents) == 0 {
		return nil, false, false
	}
	i := o.find(k)
	if i < 0 {
		return nil, false, false
	}
	e := &o.ents[i]
	return o.value(e), e.del, true
}

// set records a write of k (a delete when del), replacing an earlier
// write of the same key in the call.
func (o *overlay) set(k, v []byte, del bool) {
	i := o.find(k)
	if i >= 0 {
		e := &o.ents[i]
		if !del && len(v) <= e.v1-e.v0 {
			// Overwrite in place when the new value fits.
			n := copy(o.buf[e.v0:], v)
			e.v1 = e.v0 + n
		} else {
			e.v0 = len(o.buf)
			o.buf = append(o.buf, v...)
			e.v1 = len(o.buf)
		}
		e.del = del
		return
	}
	e := ovEntry{k0: len(o.buf), del: del}
	o.buf = append(o.buf, k...)
	e.k1 = len(o.buf)
	e.v0 = e.k1
	o.buf = append(o.buf, v...)
	e.v1 = len(o.buf)
	o.ents = append(o.ents, e)
	if o.idx != nil {
		o.idx[string(k)] = len(o.ents) - 1
	} else if len(o.ents) > overlayScan {
		o.idx = make(map[string]int, 2*len(o.ents))
		for i := range o.ents {
			o.idx[string(o.key(&o.ents[i]))] = i
		}
	}
}

// apply writes the call's writes to the batch, in the order they were
// first made, and to cache.
func (o *overlay) apply(bt *batch, cache *stateCache) error {
	for i := range o.ents {
		e := &o.ents[i]
		var err error
		if e.del {
			err = bt.b.Delete(o.key(e), nil)
		} else {
			err = bt.b.Set(o.key(e), o.value(e), nil)
		}
		if err != nil {
			return err
		}
		cache.put(o.key(e), o.value(e), e.del)
	}
	return nil
}

// scan calls fn for each key in [lo, hi) of the batch with the call's
// writes merged in (written values replace, deletes hide), in key order.
func (o *overlay) scan(bt *batch, lo, hi []byte, fn func(k, v []byte) bool) error {
	var mine []int
	for i := range o.ents {
		k := o.key(&o.ents[i])
		if bytes.Compare(k, lo) >= 0 && (hi == nil || bytes.Compare(k, hi) < 0) {
			mine = append(mine, i)
		}
	}
	if len(mine) == 0 {
		return bt.scan(lo, hi, fn)
	}
	sort.Slice(mine, func(a, b int) bool {
		return bytes.Compare(o.key(&o.ents[mine[a]]), o.key(&o.ents[mine[b]])) < 0
	})
	j := 0
	more := true
	// emitMine passes the call's entries below k (all when k is nil).
	emitMine := func(k []byte) bool {
		for j < len(mine) {
			e := &o.ents[mine[j]]
			c := 1
			if k != nil {
				c = bytes.Compare(o.key(e), k)
			}
			if c >= 0 && k != nil {
				return true
			}
			j++
			if !e.del && !fn(o.key(e), o.value(e)) {
				return false
			}
		}
		return true
	}
	err := bt.scan(lo, hi, func(k, v []byte) bool {
		if more = emitMine(k); !more {
			return false
		}
		if j < len(mine) && bytes.Equal(o.key(&o.ents[mine[j]]), k) {
			e := &o.ents[mine[j]]
			j++
			if e.del {
				return true
			}
			more = fn(k, o.value(e))
			return more
		}
		more = fn(k, v)
		return more
	})
	if err != nil || !more {
		return err
	}
	emitMine(nil)
	return nil
}
