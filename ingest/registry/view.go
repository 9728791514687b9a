package registry

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"
)

// The view's Pebble layout:
//
//	"e" + record key   the entity's record value, as on the topic
//	"x?/" + ...        index keys (see the index* constants), empty values
//	"m/next"           the next offset of the topic's partition to apply
//	"m/topic"          the topic's id, so a recreated topic is noticed
//
// An applied fetch is one Pebble batch with the position it reaches, so
// a restart resumes exactly where the view is.
var (
	keyNext    = []byte("m/next")
	keyTopicID = []byte("m/topic")
)

func entityKey(key string) []byte { return append([]byte{'e'}, key...) }

// position returns the topic id and next offset the view holds (zero
// values for an empty view).
func position(r pebble.Reader) (id [16]byte, next int64, err error) {
	v, closer, err := r.Get(keyNext)
	if errors.Is(err, pebble.ErrNotFound) {
		return id, 0, nil
	}
	if err != nil {
		return id, 0, fmt.Errorf("registry view: read position: %w", err)
	}
	if len(v) == 8 {
		next = int64(binary.BigEndian.Uint64(v))
	}
	closer.Close()
	v, closer, err = r.Get(keyTopicID)
	if err == nil {
		copy(id[:], v)
		closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return id, 0, fmt.Errorf("registry view: read topic id: %w", err)
	}
	return id, next, nil
}

func setPosition(b *pebble.Batch, id [16]byte, next int64) error {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(next))
	if err := b.Set(keyNext, n[:], nil); err != nil {
		return err
	}
	return b.Set(keyTopicID, id[:], nil)
}

// applyRecord applies one record to b, an indexed batch (so it reads
// the records applied before it in b): the entity and its index keys.
// A value that Decode refuses is applied as a tombstone and its error
// returned. old and cur are the key's entity before and after.
func applyRecord(b *pebble.Batch, key string, value []byte) (old, cur Entity, err error) {
	ek := entityKey(key)
	if v, closer, gerr := b.Get(ek); gerr == nil {
		old, _ = Decode([]byte(key), v)
		closer.Close()
	} else if !errors.Is(gerr, pebble.ErrNotFound) {
		return nil, nil, fmt.Errorf("registry view: read %s: %w", key, gerr)
	}
	if value != nil {
		cur, err = Decode([]byte(key), value)
	}
	if old != nil {
		for _, k := range old.indexKeys() {
			if derr := b.Delete([]byte(k), nil); derr != nil {
				return nil, nil, derr
			}
		}
	}
	if cur == nil {
		if derr := b.Delete(ek, nil); derr != nil {
			return nil, nil, derr
		}
		return old, nil, err
	}
	if serr := b.Set(ek, value, nil); serr != nil {
		return nil, nil, serr
	}
	for _, k := range cur.indexKeys() {
		if serr := b.Set([]byte(k), nil, nil); serr != nil {
			return nil, nil, serr
		}
	}
	return old, cur, nil
}

// get reads the entity of key from r.
func get[T any, P interface {
	*T
	Entity
}](r pebble.Reader, key string) (P, error) {
	v, closer, err := r.Get(entityKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	defer closer.Close()
	return decodeStored[T, P](v)
}

// exists reports whether r holds the entity of key.
func exists(r pebble.Reader, key string) (bool, error) {
	_, closer, err := r.Get(entityKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	closer.Close()
	return true, nil
}

// suffixes returns the rest of every key of r under prefix (raw: an
// index prefix, or entityKey of a record key prefix), in order, after
// after (exclusive) and at most limit of them (0: all).
func suffixes(r pebble.Reader, prefix []byte, after string, limit int) ([]string, error) {
	lower := prefix
	if after != "" {
		lower = append(append(append([]byte{}, prefix...), after...), 0)
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", prefix, err)
	}
	var out []string
	for ok := it.First(); ok && (limit <= 0 || len(out) < limit); ok = it.Next() {
		out = append(out, string(it.Key()[len(prefix):]))
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("scan %s: %w", prefix, err)
	}
	return out, nil
}

// list returns the entities whose record keys start with prefix, in key
// order, after the key prefix+after, at most limit (0: all).
func list[T any, P interface {
	*T
	Entity
}](r pebble.Reader, prefix, after string, limit int) ([]P, error) {
	lower := entityKey(prefix)
	if after != "" {
		lower = append(entityKey(prefix+after), 0)
	}
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: prefixEnd(entityKey(prefix))})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	var out []P
	for ok := it.First(); ok && (limit <= 0 || len(out) < limit); ok = it.Next() {
		e, err := decodeStored[T, P](it.Value())
		if err != nil {
			it.Close()
			return nil, err
		}
		out = append(out, e)
	}
	if err := it.Close(); err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	return out, nil
}

// prefixEnd returns the first key after every key starting with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte{}, p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
