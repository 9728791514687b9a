package processors

// DefaultMemoSize is the number of entries a Memo keeps by default.
const DefaultMemoSize = 16384

// Memo is a processor's in-memory memory of one partition's state: values
// it derived from what it wrote or read through its Tx (a decoded
// document, say), kept so that the next event on the same key need not
// read and decode the state again.
//
// The runtime keeps one Memo per processor and partition task, and
// empties it whenever the partition's state may have changed other than
// through that processor's Tx: a batch that was not committed (its
// writes are dropped, so is the memo), a partition assigned anew. A
// processor that puts a value in the memo exactly when it writes the
// matching state, or reads it, can therefore trust a hit as it would
// trust tx.Get.
//
// A Memo holds at most DefaultMemoSize entries; past that, a random entry
// is dropped for each new one. It is used by one task at a time and is
// not safe for concurrent use.
type Memo struct {
	// m holds pointers so that Put can replace a value without
	// allocating its key again.
	m   map[string]*memoEntry
	max int
	// local is the processor's per-partition value (see Local).
	local any
}

type memoEntry struct{ v any }

func newMemo(max int) *Memo { return &Memo{m: make(map[string]*memoEntry), max: max} }

// Get returns the value memoized for key.
func (m *Memo) Get(key []byte) (any, bool) {
	if e, ok := m.m[string(key)]; ok {
		return e.v, true
	}
	return nil, false
}

// Put memoizes v for key, replacing what was there.
func (m *Memo) Put(key []byte, v any) {
	if e, ok := m.m[string(key)]; ok {
		e.v = v
		return
	}
	if len(m.m) >= m.max {
		// Map iteration starts at a random entry: a random eviction.
		for k := range m.m {
			delete(m.m, k)
			break
		}
	}
	m.m[string(key)] = &memoEntry{v: v}
}

// Delete forgets key.
func (m *Memo) Delete(key []byte) { delete(m.m, string(key)) }

// Len returns the number of entries.
func (m *Memo) Len() int { return len(m.m) }

// Local returns the value SetLocal kept: one value per processor and
// partition task (caches over the state, say), never evicted, emptied
// whenever the memo is.
func (m *Memo) Local() any { return m.local }

// SetLocal keeps v as the processor's value for this partition task.
func (m *Memo) SetLocal(v any) { m.local = v }

func (m *Memo) reset() {
	clear(m.m)
	m.local = nil
}
