package processors

// stateCache keeps, for one processor of one partition task, the
// values of state keys as the current batch sees them: what Get read
// (absent keys too) and what calls wrote. Reads through it cost a map
// lookup instead of a Pebble get (which on a large state reads and
// decompresses sstable blocks). It holds exactly what the batch and the
// committed state hold, so the task empties it whenever that may change
// otherwise: an abandoned batch, a restore, a partition assigned anew.
// It is bounded: past its size, a random entry goes for each new one.
type stateCache struct {
	m   map[string]*cacheEntry
	max int
}

type cacheEntry struct {
	v      []byte
	absent bool
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

// put caches key's value (absent: it does not exist), copying v.
func (c *stateCache) put(key, v []byte, absent bool) {
	if e, ok := c.m[string(key)]; ok {
		e.v = append(e.v[:0], v...)
		e.absent = absent
		return
	}
	if len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[string(key)] = &cacheEntry{v: append([]byte(nil), v...), absent: absent}
}

func (c *stateCache) reset() { clear(c.m) }
