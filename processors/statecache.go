package processors

import (
	"bytes"
	"slices"
)

// stateCache keeps, for one processor of one partition task, the
// values of state keys as the current batch sees them: what Get read
// (absent keys too) from the committed state, and the batch's own
// writes. Reads through it cost a map lookup instead of a Pebble get
// (which on a large state reads and decompresses sstable blocks).
//
// The batch's writes live only here until the batch commits: they are
// dirty entries, listed in the order of their first write and never
// evicted, so a key the cache does not hold is not written by the batch
// and reads as the committed state. At the end of the batch the dirty
// entries become its Pebble batch and its changelog, one record per key
// with its last value, and then ordinary (clean) entries.
//
// It holds exactly what the committed state and the batch hold, so the
// task empties it whenever that may change otherwise: an abandoned
// batch, a restore, a partition assigned anew. It is bounded: past its
// size, a random clean entry goes for each new one (when the batch's
// writes fill half of it, it grows instead until the batch ends).
type stateCache struct {
	m   map[string]*cacheEntry
	max int
	// dirty lists the entries the current batch wrote, in the order of
	// their first write.
	dirty []*cacheEntry
}

type cacheEntry struct {
	// k is the entry's key (the map's key).
	k      string
	v      []byte
	absent bool
	// dirty marks a write of the current batch.
	dirty bool
}

// DefaultStateCacheSize is how many state keys each processor of each
// partition task keeps in memory.
const DefaultStateCacheSize = 1 << 16

func newStateCache(max int) *stateCache {
	return &stateCache{m: make(map[string]*cacheEntry), max: max}
}

// get returns the cached value of key (prefixed): ok false when not
// cached, absent true when the key is known not to exist.
func (c *stateCache) get(key []byte) (v []byte, absent, ok bool) {
	e, ok := c.m[string(key)]
	if !ok {
		return nil, false, false
	}
	return e.v, e.absent, true
}

// put caches key's committed value read from the store (absent: it does
// not exist), copying v.
func (c *stateCache) put(key, v []byte, absent bool) {
	c.entry(key).set(v, absent)
}

// write records a write of the current batch (a delete when del),
// copying v.
func (c *stateCache) write(key, v []byte, del bool) {
	e := c.entry(key)
	if !e.dirty {
		e.dirty = true
		c.dirty = append(c.dirty, e)
	}
	e.set(v, del)
}

func (e *cacheEntry) set(v []byte, absent bool) {
	e.v = append(e.v[:0], v...)
	e.absent = absent
}

// entry returns key's entry, adding it (making room) when missing.
func (c *stateCache) entry(key []byte) *cacheEntry {
	if e, ok := c.m[string(key)]; ok {
		return e
	}
	if len(c.m) >= c.max && len(c.dirty) < len(c.m)/2 {
		// Map iteration starts at a random entry: a random eviction
		// (the batch's writes stay).
		for k, e := range c.m {
			if !e.dirty {
				delete(c.m, k)
				break
			}
		}
	}
	e := &cacheEntry{k: string(key)}
	c.m[e.k] = e
	return e
}

// committed marks the batch's writes as committed state.
func (c *stateCache) committed() {
	for _, e := range c.dirty {
		e.dirty = false
	}
	clear(c.dirty)
	c.dirty = c.dirty[:0]
}

func (c *stateCache) reset() {
	clear(c.m)
	clear(c.dirty)
	c.dirty = c.dirty[:0]
}

// writesIn returns the batch's writes with keys in [lo, hi) (hi nil: no
// upper bound), sorted by key.
func (c *stateCache) writesIn(lo, hi []byte) []write {
	var ws []write
	for _, e := range c.dirty {
		k := unsafeBytes(e.k)
		if bytes.Compare(k, lo) >= 0 && (hi == nil || bytes.Compare(k, hi) < 0) {
			ws = append(ws, write{k: k, v: e.v, del: e.absent})
		}
	}
	slices.SortFunc(ws, func(a, b write) int { return bytes.Compare(a.k, b.k) })
	return ws
}

// write is a key's write (a delete when del) merged over a scan.
type write struct {
	k, v []byte
	del  bool
}

// scanFunc calls fn for each key in [lo, hi) of a store, in key order,
// until fn returns false.
type scanFunc func(lo, hi []byte, fn func(k, v []byte) bool) error

// mergeScan calls fn for each key in [lo, hi) of base with ws (sorted by
// key, all in the range) merged in: a write replaces base's value, a
// delete hides it; in key order, until fn returns false.
func mergeScan(base scanFunc, lo, hi []byte, ws []write, fn func(k, v []byte) bool) error {
	if len(ws) == 0 {
		return base(lo, hi, fn)
	}
	j := 0
	more := true
	// mine passes the writes below k (all of them when k is nil).
	mine := func(k []byte) bool {
		for ; j < len(ws); j++ {
			w := &ws[j]
			if k != nil && bytes.Compare(w.k, k) >= 0 {
				return true
			}
			if !w.del && !fn(w.k, w.v) {
				j++
				return false
			}
		}
		return true
	}
	err := base(lo, hi, func(k, v []byte) bool {
		if more = mine(k); !more {
			return false
		}
		if j < len(ws) && bytes.Equal(ws[j].k, k) {
			w := &ws[j]
			j++
			if w.del {
				return true
			}
			more = fn(k, w.v)
			return more
		}
		more = fn(k, v)
		return more
	})
	if err != nil || !more {
		return err
	}
	mine(nil)
	return nil
}
