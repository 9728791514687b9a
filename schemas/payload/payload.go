// Package payload decodes device payloads into the one generic value
// representation every processor shares, so an event is decoded once.
//
// A decoded value is one of: map[string]any, []any, string, bool, nil,
// int64 (a JSON number with no fraction or exponent that fits), or
// float64 (every other JSON number).
package payload

import (
	"errors"
	"strconv"

	"github.com/segmentio/encoding/json"
)

// ErrNotJSON is wrapped by Decode when the payload is not one JSON value,
// or holds a number no float64 can represent (1e999): such a payload has
// no value iotpipe could compute with or write back.
var ErrNotJSON = errors.New("payload is not JSON")

// Decode parses data as a single strict JSON value (RFC 8259); white
// space around it is allowed (what bytes.TrimSpace trims). A key repeated
// in an object keeps its last value; invalid UTF-8 and lone surrogate
// escapes in strings become U+FFFD, as encoding/json does. The value's
// strings share one copy of data; data itself is not kept.
func Decode(data []byte) (any, error) { return decode(data, false) }

// DecodeLenient is Decode, but a number no float64 can hold (1e999) is
// kept as its literal, a string, instead of failing the payload: for
// readers that only skip such values (the ClickHouse sink's metrics).
func DecodeLenient(data []byte) (any, error) { return decode(data, true) }

// Number converts a JSON number literal to int64 when it is an integer
// that fits, and to float64 otherwise; a literal no float64 can hold
// (1e999) is returned as it is, a string.
func Number(lit string) any {
	if i, err := strconv.ParseInt(lit, 10, 64); err == nil {
		return i
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return lit
	}
	return f
}

// Encode writes v as compact JSON with map keys sorted, so equal values
// encode to equal bytes.
func Encode(v any) ([]byte, error) {
	return json.Marshal(v)
}

// AppendEncode appends the JSON encoding of v to dst.
func AppendEncode(dst []byte, v any) ([]byte, error) {
	return json.Append(dst, v, json.SortMapKeys)
}
