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

// ErrNotJSON is wrapped by Decode when the payload is not one JSON value.
var ErrNotJSON = errors.New("payload is not JSON")

// Decode parses data as a single JSON value.
func Decode(data []byte) (any, error) {
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
	return normalize(v), nil
}

func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = normalize(x)
		}
		return t
	case []any:
		for i, x := range t {
			t[i] = normalize(x)
		}
		return t
	case json.Number:
		return Number(string(t))
	default:
		return v
	}
}

// Number converts a JSON number literal to int64 when it is an integer
// that fits, and to float64 otherwise.
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
