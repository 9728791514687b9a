// Package memstore is an in-memory state store for the analytics
// libraries' tests: the Get/Set/Delete/Scan shape *processors.Tx has, with
// sorted scans and injectable write failures.
package memstore

import (
	"errors"
	"sort"
	"strings"
)

// ErrInjected is the error of an injected write failure.
var ErrInjected = errors.New("injected store failure")

// Store is an in-memory store. M holds the state; when FailAfter > 0, the
// FailAfter-th write (counted in Writes) and every later one fail with
// ErrInjected.
type Store struct {
	M         map[string][]byte
	FailAfter int
	Writes    int
}

// New returns an empty Store.
func New() *Store { return &Store{M: map[string][]byte{}} }

// Get returns a copy of the value of k.
func (s *Store) Get(k []byte) ([]byte, bool, error) {
	v, ok := s.M[string(k)]
	return append([]byte(nil), v...), ok, nil
}

func (s *Store) write() error {
	s.Writes++
	if s.FailAfter > 0 && s.Writes >= s.FailAfter {
		return ErrInjected
	}
	return nil
}

// Set stores a copy of v under k.
func (s *Store) Set(k, v []byte) error {
	if err := s.write(); err != nil {
		return err
	}
	s.M[string(k)] = append([]byte(nil), v...)
	return nil
}

// Delete removes k.
func (s *Store) Delete(k []byte) error {
	if err := s.write(); err != nil {
		return err
	}
	delete(s.M, string(k))
	return nil
}

// Scan calls fn for the keys in [lo, hi) in order (hi nil: to the end).
func (s *Store) Scan(lo, hi []byte, fn func(k, v []byte) bool) error {
	for _, k := range s.keys(func(k string) bool { return k >= string(lo) && (hi == nil || k < string(hi)) }) {
		if !fn([]byte(k), s.M[k]) {
			break
		}
	}
	return nil
}

// KeysWithPrefix returns the keys starting with p, sorted.
func (s *Store) KeysWithPrefix(p string) []string {
	return s.keys(func(k string) bool { return strings.HasPrefix(k, p) })
}

func (s *Store) keys(keep func(string) bool) []string {
	var keys []string
	for k := range s.M {
		if keep(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

// Clone returns a deep copy of s (without its failure settings).
func (s *Store) Clone() *Store {
	c := New()
	for k, v := range s.M {
		c.M[k] = append([]byte(nil), v...)
	}
	return c
}
