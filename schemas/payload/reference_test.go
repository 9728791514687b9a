package payload

import (
	"bytes"
	"fmt"

	"github.com/segmentio/encoding/json"
)

// referenceDecode is Decode as it was before the single-pass decoder:
// segmentio/encoding parses into interface{} with UseNumber, then
// referenceNormalize turns each json.Number into int64 or float64. The
// differential fuzz test and the benchmarks compare Decode with it.
func referenceDecode(data []byte, lenient bool) (any, error) {
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
	return referenceNormalize(v, lenient)
}

func referenceNormalize(v any, lenient bool) (any, error) {
	var err error
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if t[k], err = referenceNormalize(x, lenient); err != nil {
				return nil, err
			}
		}
		return t, nil
	case []any:
		for i, x := range t {
			if t[i], err = referenceNormalize(x, lenient); err != nil {
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
