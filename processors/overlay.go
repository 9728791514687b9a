package processors

import (
	"bytes"
	"slices"
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

// apply records the call's writes in the batch's write set (cache), in
// the order they were first made.
func (o *overlay) apply(cache *stateCache) {
	for i := range o.ents {
		e := &o.ents[i]
		cache.write(o.key(e), o.value(e), e.del)
	}
}

// scan calls fn for each key in [lo, hi) of base with the call's writes
// merged in (written values replace, deletes hide), in key order.
func (o *overlay) scan(base scanFunc, lo, hi []byte, fn func(k, v []byte) bool) error {
	var ws []write
	for i := range o.ents {
		e := &o.ents[i]
		k := o.key(e)
		if bytes.Compare(k, lo) >= 0 && (hi == nil || bytes.Compare(k, hi) < 0) {
			ws = append(ws, write{k: k, v: o.value(e), del: e.del})
		}
	}
	slices.SortFunc(ws, func(a, b write) int { return bytes.Compare(a.k, b.k) })
	return mergeScan(base, lo, hi, ws, fn)
}
