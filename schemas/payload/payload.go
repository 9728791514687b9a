// Package payload decodes device payloads into the one generic value
// representation every processor shares, so an event is decoded once.
//
// A decoded value is one of: map[string]any, []any, string, bool, nil,
// int64 (a JSON number with no fraction or exponent that fits), or
// float64 (every other JSON number).
package payload

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/segmentio/encoding/json"
)

// ErrNotJSON is wrapped by Decode when the payload is not one JSON value,
// or holds a number no float64 can represent (1e999): such a payload has
// no value iotpipe could compute with or write back.
var ErrNotJSON = errors.New("payload is not JSON")

// Decode parses data as a single JSON value.
func Decode(data []byte) (any, error) { return decode(data, false) }

// DecodeLenient is Decode, but a number no float64 can hold (1e999) is
// kept as its literal, a string, instead of failing the payload: for
// readers that only skip such values (the ClickHouse sink's metrics).
func DecodeLenient(data []byte) (any, error) { return decode(data, true) }

func decode(data []byte, lenient bool) (any, error) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrNotJSON)
	}
	var v any
	rest, err := json.Parse(data, &v, json.UseNumber)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: trailing data after the first value", ErrNotJSON)
	}
	return normalize(v, lenient)
}

func normalize(v any, lenient bool) (any, error) {
	var err error
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if t[k], err = normalize(x, lenient); err != nil {
				return nil, err
			}
		}
		return t, nil
	case []any:
		for i, x := range t {
			if t[i], err = normalize(x, lenient); err != nil {
				return nil, err
			}
		}
		return t, nil
	case json.Number:
		n := Number(string(t))
		if _, ok := n.(string); ok && !lenient {
			return nil, fmt.Errorf("%w: number %.40s is out of range", ErrNotJSON, t)
		}
		return n, nil
	default:
		return v, nil
	}
}

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
