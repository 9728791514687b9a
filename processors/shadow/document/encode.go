package document

import (
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// appendValue appends v as compact JSON with object keys sorted. v is a
// payload value (map[string]any, []any, string, bool, nil, int64,
// float64); anything else is written as null.
func appendValue(dst []byte, v any) []byte {
	switch t := v.(type) {
	case nil:
		return append(dst, "null"...)
	case bool:
		if t {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case int64:
		return strconv.AppendInt(dst, t, 10)
	case float64:
		return appendFloat(dst, t)
	case string:
		return appendString(dst, t)
	case []any:
		dst = append(dst, '[')
		for i, x := range t {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendValue(dst, x)
		}
		return append(dst, ']')
	case map[string]any:
		// (Written here rather than in a helper: a self-recursive
		// function lets the compiler keep callers' buffers on the stack.)
		if len(t) == 0 {
			return append(dst, "{}"...)
		}
		var buf [16]string
		keys := sortedKeys(buf[:0], t)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendValue(dst, t[k])
		}
		return append(dst, '}')
	default:
		return append(dst, "null"...)
	}
}

func sortedKeys(keys []string, m map[string]any) []string {
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendFloat writes f as encoding/json does.
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// plain marks the ASCII bytes a JSON string holds as they are.
var plain = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString writes s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if plain[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendTimestamp writes the metadata leaf {"timestamp":ts}.
func appendTimestamp(dst []byte, ts int64) []byte {
	dst = append(dst, `{"timestamp":`...)
	dst = strconv.AppendInt(dst, ts, 10)
	return append(dst, '}')
}

// appendMetaLeaf writes the metadata of a request value: the same shape
// with every leaf (null included) replaced by leaf, the encoded
// {"timestamp":ts}.
func appendMetaLeaf(dst []byte, v any, leaf []byte) []byte {
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 {
			return append(dst, "{}"...)
		}
		var buf [16]string
		keys := sortedKeys(buf[:0], t)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, k)
			dst = append(dst, ':')
			dst = appendMetaLeaf(dst, t[k], leaf)
		}
		return append(dst, '}')
	case []any:
		dst = append(dst, '[')
		for i, x := range t {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendMetaLeaf(dst, x, leaf)
		}
		return append(dst, ']')
	default:
		return append(dst, leaf...)
	}
}
