package window

import (
	"encoding/binary"
	"math"
)

// Store is the key-value state an Aggregator reads and writes: the
// partition's key space for one rule. It has the shape of processors.Tx's
// state methods, so a *processors.Tx satisfies it. Set and Delete must not
// retain the slices they are given (Pebble batches copy them).
type Store interface {
	Get(key []byte) ([]byte, bool, error)
	Set(key, value []byte) error
	Delete(key []byte) error
	// Scan calls fn for each key in [lower, upper) in order, until fn
	// returns false. The slices are valid only during the call.
	Scan(lower, upper []byte, fn func(key, value []byte) bool) error
}

// Key layout (every integer big endian; times are int64 with the sign bit
// flipped so byte order is numeric order; group keys are length-prefixed
// with a uvarint so no key is a prefix of another):
//
//	"m"                                  -> watermark (8 bytes)
//	"o" | start | len(key) | key         -> summary of an open window
//	"c" | start | len(key) | key         -> summary of a closed window kept for late updates
//	"v" | start | len(key) | key | block -> a full block of blockSize values (float64 bits), Percentile only
//
// Open and closed windows sort by start, so the windows to close at a
// watermark are one range scan from the beginning of "o".
const (
	prefixMeta   = 'm'
	prefixOpen   = 'o'
	prefixClosed = 'c'
	prefixValue  = 'v'
)

// metaKey is the watermark's key.
var metaKey = []byte{prefixMeta}

// appendTime appends t so that byte order is numeric order.
func appendTime(b []byte, t int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(t)^(1<<63))
}

// readTime is appendTime's inverse.
func readTime(b []byte) int64 { return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)) }

// appendWindowKey appends prefix | start | len(key) | key.
func appendWindowKey(b []byte, prefix byte, start int64, key string) []byte {
	b = append(b, prefix)
	b = appendTime(b, start)
	b = binary.AppendUvarint(b, uint64(len(key)))
	return append(b, key...)
}

// appendValueKey appends the key of a window's block-th value block.
func appendValueKey(b []byte, start int64, key string, block int64) []byte {
	b = appendWindowKey(b, prefixValue, start, key)
	return binary.BigEndian.AppendUint64(b, uint64(block))
}

// timeBound returns prefix | t: every window key of that prefix with a
// start < t sorts before it.
func timeBound(prefix byte, t int64) []byte {
	return appendTime([]byte{prefix}, t)
}

// parseWindowKey splits a window key (any prefix) into start and group key.
func parseWindowKey(k []byte) (start int64, key string, ok bool) {
	if len(k) < 10 {
		return 0, "", false
	}
	start = readTime(k[1:9])
	n, w := binary.Uvarint(k[9:])
	if w <= 0 || uint64(len(k)-9-w) != n {
		return 0, "", false
	}
	return start, string(k[9+w:]), true
}

// encodeFloat and decodeFloat store a value exactly.
func encodeFloat(b []byte, v float64) []byte {
	return binary.BigEndian.AppendUint64(b, math.Float64bits(v))
}

func decodeFloat(b []byte) float64 { return math.Float64frombits(binary.BigEndian.Uint64(b)) }
