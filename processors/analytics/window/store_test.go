package window

import (
	"errors"
	"sort"
	"strings"

	"github.com/iotpipe/iotpipe/processors"
)

// The rules processor hands its *processors.Tx to the Aggregator.
var _ Store = (*processors.Tx)(nil)

// memStore is an in-memory Store with sorted scans, for tests.
type memStore struct {
	m map[string][]byte
	// failAfter, when > 0, makes the failAfter-th write and later fail.
	failAfter, writes int
}

func newMemStore() *memStore { return &memStore{m: map[string][]byte{}} }

var errInjected = errors.New("injected store failure")

func (s *memStore) Get(k []byte) ([]byte, bool, error) {
	v, ok := s.m[string(k)]
	return append([]byte(nil), v...), ok, nil
}

func (s *memStore) write() error {
	s.writes++
	if s.failAfter > 0 && s.writes >= s.failAfter {
		return errInjected
	}
	return nil
}

func (s *memStore) Set(k, v []byte) error {
	if err := s.write(); err != nil {
		return err
	}
	s.m[string(k)] = append([]byte(nil), v...)
	return nil
}

func (s *memStore) Delete(k []byte) error {
	if err := s.write(); err != nil {
		return err
	}
	delete(s.m, string(k))
	return nil
}

func (s *memStore) Scan(lo, hi []byte, fn func(k, v []byte) bool) error {
	keys := make([]string, 0, len(s.m))
	for k := range s.m {
		if k >= string(lo) && (hi == nil || k < string(hi)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !fn([]byte(k), s.m[k]) {
			break
		}
	}
	return nil
}

// keysWithPrefix lists the store's keys starting with p, sorted.
func (s *memStore) keysWithPrefix(p string) []string {
	var out []string
	for k := range s.m {
		if strings.HasPrefix(k, p) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// clone copies the store (a crash-consistent snapshot).
func (s *memStore) clone() *memStore {
	c := newMemStore()
	for k, v := range s.m {
		c.m[k] = append([]byte(nil), v...)
	}
	return c
}
