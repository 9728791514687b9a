package shadow

import (
	"bytes"
	"sync"

	"github.com/iotpipe/iotpipe/processors/shadow/document"
)

// DefaultCacheSize is the default number of decoded shadows kept.
const DefaultCacheSize = 16384

// cache keeps decoded shadows by state key, each with the stored bytes it
// was decoded from. A hit requires the bytes just read from the state to
// equal the cached ones, so the cache never changes what Process does: it
// only skips decoding a document it has seen (decoded shadows are
// immutable: document.Apply copies what it changes). When full it is
// emptied.
type cache struct {
	mu  sync.Mutex
	max int
	// m holds pointers so that put can replace a shadow's entry without
	// allocating its key again; entries are read and written under mu.
	m map[string]*cacheEntry
}

type cacheEntry struct {
	stored []byte
	s      document.Shadow
}

func newCache(max int) *cache {
	if max == 0 {
		max = DefaultCacheSize
	}
	if max < 0 {
		return nil
	}
	return &cache{max: max, m: make(map[string]*cacheEntry)}
}

func (c *cache) get(key, stored []byte) (document.Shadow, bool) {
	if c == nil {
		return document.Shadow{}, false
	}
	c.mu.Lock()
	var e cacheEntry
	p, ok := c.m[string(key)]
	if ok {
		e = *p
	}
	c.mu.Unlock()
	if !ok || !bytes.Equal(e.stored, stored) {
		return document.Shadow{}, false
	}
	return e.s, true
}

func (c *cache) put(key, stored []byte, s document.Shadow) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if p, ok := c.m[string(key)]; ok {
		*p = cacheEntry{stored: stored, s: s}
		c.mu.Unlock()
		return
	}
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[string(key)] = &cacheEntry{stored: stored, s: s}
	c.mu.Unlock()
}
