package processors

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble"
)

// State key layout, partition first so a partition's state can be
// dropped, restored or handed over as one key range:
//
//	'p' | partition (4 bytes, big endian) | processor name | 0x00 | key
//
// The runtime's own keys use the reserved processor name "" (so the
// prefix is 'p' | partition | 0x00): "offset" holds the next offset (it
// goes to the changelog with the state), "changelog" the end offset of
// the changelog partition this state is current with (local only).

func partitionPrefix(partition int32) []byte {
	b := make([]byte, 5, 32)
	b[0] = 'p'
	binary.BigEndian.PutUint32(b[1:], uint32(partition))
	return b
}

func processorPrefix(partition int32, name string) []byte {
	return append(append(partitionPrefix(partition), name...), 0)
}

func offsetKey(partition int32) []byte {
	return append(processorPrefix(partition, ""), "offset"...)
}

func changelogEndKey(partition int32) []byte {
	return append(processorPrefix(partition, ""), "changelog"...)
}

// readOffset returns the next offset to process for partition, or -1 when
// the state holds none.
func readOffset(db *pebble.DB, partition int32) (int64, error) {
	return readInt(db, offsetKey(partition), "offset", partition)
}

// readChangelogEnd returns the changelog end offset partition's state is
// current with, or -1 when unknown (no checkpoint).
func readChangelogEnd(db *pebble.DB, partition int32) (int64, error) {
	return readInt(db, changelogEndKey(partition), "changelog checkpoint", partition)
}

func readInt(db *pebble.DB, key []byte, what string, partition int32) (int64, error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return -1, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s of partition %d: %w", what, partition, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("read %s of partition %d: corrupt value", what, partition)
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

func encodeOffset(o int64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(o))
	return b
}

// readPartitions finds key of processor in the first of partitions that
// holds it.
func readPartitions(db *pebble.DB, partitions []int32, processor string, key []byte) ([]byte, bool, error) {
	for _, p := range partitions {
		v, closer, err := db.Get(append(processorPrefix(p, processor), key...))
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		out := append([]byte(nil), v...)
		closer.Close()
		return out, true, nil
	}
	return nil, false, nil
}

// readAnyPartition finds key of processor in whichever partition holds
// it, skipping from one partition's key range to the next.
func readAnyPartition(db *pebble.DB, processor string, key []byte) ([]byte, bool, error) {
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{'p'}, UpperBound: []byte{'q'}})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	for ok := it.First(); ok; {
		k := it.Key()
		if len(k) < 5 {
			ok = it.Next()
			continue
		}
		p := int32(binary.BigEndian.Uint32(k[1:5]))
		v, closer, err := db.Get(append(processorPrefix(p, processor), key...))
		if err == nil {
			out := append([]byte(nil), v...)
			closer.Close()
			return out, true, nil
		}
		if !errors.Is(err, pebble.ErrNotFound) {
			return nil, false, err
		}
		ok = it.SeekGE(prefixEnd(partitionPrefix(p)))
	}
	return nil, false, nil
}
