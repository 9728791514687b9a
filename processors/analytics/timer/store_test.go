package timer

import (
	"errors"
	"sort"

	"github.com/iotpipe/iotpipe/processors"
)

// The rules processor hands its *processors.Tx to Timers.
var _ Store = (*processors.Tx)(nil)

// memStore is an in-memory Store with sorted scans, for tests.
type memStore struct {
	m         map[string][]byte
	failAfter int // when > 0, the failAfter-th write and later fail
	writes    int
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
	var keys []string
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

func (s *memStore) clone() *memStore {
	c := newMemStore()
	for k, v := range s.m {
		c.m[k] = append([]byte(nil), v...)
	}
	return c
}
