package clickhouse

import (
	"bytes"
	"strconv"

	"github.com/segmentio/encoding/json"

	"github.com/iotpipe/iotpipe/schemas/payload"
)

// flattenJSON is Flatten(payload.Decode(data)) without building the
// decoded value: it walks the tokens, so a telemetry event costs a few
// small allocations instead of one per JSON node. It also returns the
// top-level "timestamp" field (a number as int64 or float64, or a
// string), and ok=false when data is not one JSON value. Payloads with
// escaped or non-ASCII keys, or a key repeated in one object, take the
// reference path.
func flattenJSON(data []byte) (metrics map[string]float64, timestamp any, ok bool) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 || !json.Valid(data) {
		return nil, nil, false
	}
	var (
		pathBuf  [128]byte
		markBuf  [16]int
		idxBuf   [16]int
		levelBuf [16]int
		keyBuf   [32][]byte
		tok      json.Tokenizer
	)
	path := pathBuf[:0]
	marks := markBuf[:0]   // path length at each open container
	idx := idxBuf[:0]      // next element index of each open container, -1 for objects
	levels := levelBuf[:0] // start in keys of each open container's keys
	keys := keyBuf[:0]     // raw keys seen in the open objects
	// elem sets path to the next element of the innermost array.
	elem := func() {
		if len(idx) == 0 || idx[len(idx)-1] < 0 {
			return
		}
		path = path[:marks[len(marks)-1]]
		if len(path) > 0 {
			path = append(path, '.')
		}
		path = strconv.AppendInt(path, int64(idx[len(idx)-1]), 10)
		idx[len(idx)-1]++
	}
	tok.Reset(data)
	for tok.Next() {
		if tok.Err != nil {
			return nil, nil, false
		}
		switch tok.Delim {
		case '{', '[':
			elem()
			marks = append(marks, len(path))
			if tok.Delim == '[' {
				idx = append(idx, 0)
			} else {
				idx = append(idx, -1)
			}
			levels = append(levels, len(keys))
			continue
		case '}', ']':
			path = path[:marks[len(marks)-1]]
			keys = keys[:levels[len(levels)-1]]
			marks, idx, levels = marks[:len(marks)-1], idx[:len(idx)-1], levels[:len(levels)-1]
			continue
		case ':', ',':
			continue
		}
		if tok.IsKey {
			raw := tok.Value
			if !plainString(raw) {
				return slowFlatten(data)
			}
			for _, k := range keys[levels[len(levels)-1]:] {
				if bytes.Equal(k, raw) {
					return slowFlatten(data) // the last of repeated keys wins
				}
			}
			keys = append(keys, raw)
			path = path[:marks[len(marks)-1]]
			if len(path) > 0 {
				path = append(path, '.')
			}
			path = append(path, raw[1:len(raw)-1]...)
			continue
		}
		elem()
		top := len(marks) == 1 && idx[0] < 0 && string(path) == "timestamp"
		switch {
		case tok.Value.Number():
			f, err := strconv.ParseFloat(string(tok.Value), 64)
			if err != nil {
				continue
			}
			if metrics == nil {
				metrics = make(map[string]float64, 8)
			}
			key := string(path)
			if key == "" {
				key = "value"
			}
			metrics[key] = f
			if top {
				if i, err := strconv.ParseInt(string(tok.Value), 10, 64); err == nil {
					timestamp = i
				} else {
					timestamp = f
				}
			}
		case top && tok.Value.String():
			timestamp = string(tok.Value.Unquote())
		}
	}
	if tok.Err != nil {
		return nil, nil, false
	}
	return metrics, timestamp, true
}

// plainString reports whether the quoted JSON string raw holds printable
// ASCII without escapes, so its bytes are its value.
func plainString(raw []byte) bool {
	for _, c := range raw[1 : len(raw)-1] {
		if c < 0x20 || c >= 0x7f || c == '\\' {
			return false
		}
	}
	return true
}

// slowFlatten is the reference: decode, then Flatten.
func slowFlatten(data []byte) (map[string]float64, any, bool) {
	v, err := payload.Decode(data)
	if err != nil {
		return nil, nil, false
	}
	var ts any
	if m, ok := v.(map[string]any); ok {
		switch x := m["timestamp"].(type) {
		case int64, float64, string:
			ts = x
		}
	}
	return Flatten(v, nil), ts, true
}
