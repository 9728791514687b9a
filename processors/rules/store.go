package rules

import (
	"github.com/iotpipe/iotpipe/processors"
)

// subStore is a part of the rules processor's key space: every key is
// prefixed. It satisfies rulesql.State, window.Store and timer.Store.
type subStore struct {
	tx     *processors.Tx
	prefix []byte
	buf    []byte
}

// bind sets the call s reads and writes through and returns s.
func (s *subStore) bind(tx *processors.Tx) *subStore {
	s.tx = tx
	return s
}

// key returns prefix+k in a reused buffer; the Tx copies it before the
// store keeps it (Pebble batches copy keys and values).
func (s *subStore) key(k []byte) []byte {
	s.buf = append(append(s.buf[:0], s.prefix...), k...)
	return s.buf
}

func (s *subStore) Get(k []byte) ([]byte, bool, error) { return s.tx.Get(s.key(k)) }

// Recall and Keep use the call's memo (rulesql's env.Memo): the runtime
// empties it whenever the state may have changed other than through
// this processor's calls.
func (s *subStore) Recall(k []byte) (any, bool) { return s.tx.Memo().Get(s.key(k)) }
func (s *subStore) Keep(k []byte, v any)        { s.tx.Memo().Put(s.key(k), v) }
func (s *subStore) Set(k, v []byte) error       { return s.tx.Set(s.key(k), v) }
func (s *subStore) Delete(k []byte) error       { return s.tx.Delete(s.key(k)) }

// Scan iterates [lower, upper) of this part; a nil upper means its end.
func (s *subStore) Scan(lower, upper []byte, fn func(k, v []byte) bool) error {
	lo := append(append([]byte(nil), s.prefix...), lower...)
	var hi []byte
	if upper == nil {
		hi = prefixEnd(s.prefix)
	} else {
		hi = append(append([]byte(nil), s.prefix...), upper...)
	}
	n := len(s.prefix)
	return s.tx.Scan(lo, hi, func(k, v []byte) bool { return fn(k[n:], v) })
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
