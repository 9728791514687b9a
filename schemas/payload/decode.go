package payload

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// decode parses data (surrounding Unicode white space allowed, as
// bytes.TrimSpace trims it) as one strict JSON value in one pass,
// building the payload representation directly: numbers become int64 or
// float64 as Number says, without an intermediate json.Number. Strings
// and keys with no escape and valid UTF-8 are substrings of one copy of
// data; the others are unescaped as encoding/json does (invalid UTF-8
// and lone surrogates become U+FFFD). A duplicate key keeps its last
// value. A number no float64 holds fails the payload (when it is JSON
// otherwise: a syntax error is the one reported), or with lenient is
// kept as its literal.
//
// It is written by hand because no library at hand gives these values in
// one pass: segmentio/encoding and encoding/json need json.Number and a
// second walk (their int64 option wraps integers past int64), and
// valyala/fastjson's parser accepts NaN and Inf and keeps invalid UTF-8,
// so it needs its separate validation pass, a UTF-8 pass and a walk of
// its own tree to build these values: 1.1-1.5x the reference's speed on
// BenchmarkDecode's payloads, where this decoder is 2.4-3x (CPU time).
func decode(data []byte, lenient bool) (any, error) {
	trimmed := data
	if len(data) == 0 || !visibleASCII(data[0]) || !visibleASCII(data[len(data)-1]) {
		trimmed = bytes.TrimSpace(data) // 9 ns on a 34-byte payload: the common one needs none
	}
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrNotJSON)
	}
	d := decoders.Get().(*decoder)
	defer d.release()
	d.s, d.lenient = string(trimmed), lenient
	v := d.value()
	d.ws()
	if d.err == nil && d.i != len(d.s) {
		d.fail("trailing data after the first value")
	}
	if d.err == nil && d.outOfRange {
		if n := firstOutOfRange(v); n != nil {
			d.i = n.at
			d.fail("number %.40s is out of range", n.lit)
		}
	}
	if d.err != nil {
		lead := len(data) - len(bytes.TrimLeftFunc(data, unicode.IsSpace))
		return nil, fmt.Errorf("%w: %s at offset %d", ErrNotJSON, d.err, lead+d.errAt)
	}
	return v, nil
}

// visibleASCII reports whether c is an ASCII byte that is neither a
// control character nor a space: no white space starts or ends with it.
func visibleASCII(c byte) bool { return c > ' ' && c < utf8.RuneSelf }

// decoder is the state of one decode: the document, the position, and
// stacks of the members and elements of the objects and arrays being
// read, kept between decodes (see decoders).
type decoder struct {
	s       string
	i       int
	lenient bool
	err     error
	errAt   int // the offset in s of err
	// outOfRange is set when the value holds an *outOfRange.
	outOfRange bool
	members    []member
	elems      []any
	// used is how far the stacks were filled: release clears that much,
	// once, rather than each object and array clearing its own.
	usedMembers, usedElems int
	buf                    []byte // an unescaped string
}

type member struct {
	key string
	val any
}

// decoders keeps decoders with their stacks between payloads.
var decoders = sync.Pool{New: func() any {
	return &decoder{members: make([]member, 0, 32), elems: make([]any, 0, 32)}
}}

// release returns d to decoders, keeping nothing of the payload; stacks
// a rare huge payload grew are dropped.
func (d *decoder) release() {
	clear(d.members[:max(d.usedMembers, len(d.members))])
	clear(d.elems[:max(d.usedElems, len(d.elems))])
	members, elems, buf := d.members[:0], d.elems[:0], d.buf[:0]
	if cap(members) > 1024 {
		members = make([]member, 0, 32)
	}
	if cap(elems) > 1024 {
		elems = make([]any, 0, 32)
	}
	if cap(buf) > 4096 {
		buf = nil
	}
	*d = decoder{members: members, elems: elems, buf: buf}
	decoders.Put(d)
}

// fail notes the first error, at the current position, and returns nil.
func (d *decoder) fail(format string, args ...any) any {
	if d.err == nil {
		d.err, d.errAt = fmt.Errorf(format, args...), d.i
	}
	return nil
}

// failByte fails on the byte at the current position, or on the end.
func (d *decoder) failByte(context string) any {
	if d.i >= len(d.s) {
		return d.fail("unexpected end %s", context)
	}
	return d.fail("invalid character %q %s", d.s[d.i], context)
}

// ws skips JSON white space.
func (d *decoder) ws() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// value reads the value at d.i; the caller skipped the white space
// before it. It returns nil with d.err set on an error.
func (d *decoder) value() any {
	if d.i >= len(d.s) {
		return d.failByte("looking for the beginning of a value")
	}
	switch c := d.s[d.i]; c {
	case '{':
		return d.object()
	case '[':
		return d.array()
	case '"':
		return d.str()
	case 't':
		return d.literal("true", true)
	case 'f':
		return d.literal("false", false)
	case 'n':
		return d.literal("null", nil)
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return d.number()
		}
		return d.failByte("looking for the beginning of a value")
	}
}

func (d *decoder) literal(lit string, v any) any {
	if len(d.s)-d.i < len(lit) || d.s[d.i:d.i+len(lit)] != lit {
		return d.fail("invalid literal, want %s", lit)
	}
	d.i += len(lit)
	return v
}

// object reads an object: its members on the member stack, then one map
// of their number (a repeated key takes the last value).
func (d *decoder) object() any {
	d.i++ // '{'
	d.ws()
	if d.i < len(d.s) && d.s[d.i] == '}' {
		d.i++
		return map[string]any{}
	}
	start := len(d.members)
	for {
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			return d.failByte("looking for the beginning of an object key")
		}
		k := d.str()
		if d.err != nil {
			return nil
		}
		d.ws()
		if d.i >= len(d.s) || d.s[d.i] != ':' {
			return d.failByte("after an object key")
		}
		d.i++
		d.ws()
		v := d.value()
		if d.err != nil {
			return nil
		}
		d.members = append(d.members, member{key: k, val: v})
		d.ws()
		if d.i >= len(d.s) {
			return d.failByte("after an object member")
		}
		switch d.s[d.i] {
		case ',':
			d.i++
			d.ws()
		case '}':
			d.i++
			members := d.members[start:]
			m := make(map[string]any, len(members))
			for _, f := range members {
				m[f.key] = f.val
			}
			d.usedMembers = max(d.usedMembers, len(d.members))
			d.members = d.members[:start]
			return m
		default:
			return d.failByte("after an object member")
		}
	}
}

// array reads an array: its elements on the element stack, then copied
// to a slice of their number.
func (d *decoder) array() any {
	d.i++ // '['
	d.ws()
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		return []any{}
	}
	start := len(d.elems)
	for {
		v := d.value()
		if d.err != nil {
			return nil
		}
		d.elems = append(d.elems, v)
		d.ws()
		if d.i >= len(d.s) {
			return d.failByte("after an array element")
		}
		switch d.s[d.i] {
		case ',':
			d.i++
			d.ws()
		case ']':
			d.i++
			elems := d.elems[start:]
			a := make([]any, len(elems))
			copy(a, elems)
			d.usedElems = max(d.usedElems, len(d.elems))
			d.elems = d.elems[:start]
			return a
		default:
			return d.failByte("after an array element")
		}
	}
}

// str reads a string (a value or a key). One with no escape and valid
// UTF-8 is a substring of d.s; the others are unescaped by unquote.
func (d *decoder) str() string {
	start := d.i + 1
	ascii := true
	for i := start; i < len(d.s); i++ {
		switch c := d.s[i]; {
		case c == '"':
			s := d.s[start:i]
			if !ascii && !utf8.ValidString(s) {
				return d.unquote(start)
			}
			d.i = i + 1
			return s
		case c == '\\':
			return d.unquote(start)
		case c < 0x20:
			d.i = i
			d.fail("invalid control character %q in a string", c)
			return ""
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	d.i = len(d.s)
	d.fail("unexpected end in a string")
	return ""
}

// unquote reads the string whose content starts at start, unescaping it
// as encoding/json does: invalid UTF-8 and a lone or unpaired surrogate
// escape become U+FFFD.
func (d *decoder) unquote(start int) string {
	b := d.buf[:0]
	i := start
	for i < len(d.s) {
		c := d.s[i]
		switch {
		case c == '"':
			d.i, d.buf = i+1, b
			return string(b)
		case c < 0x20:
			d.i = i
			d.fail("invalid control character %q in a string", c)
			return ""
		case c < utf8.RuneSelf && c != '\\':
			b = append(b, c)
			i++
		case c >= utf8.RuneSelf:
			r, n := utf8.DecodeRuneInString(d.s[i:])
			b = utf8.AppendRune(b, r) // U+FFFD for an invalid byte
			i += n
		default: // '\\'
			if i+1 >= len(d.s) {
				d.i = len(d.s)
				d.fail("unexpected end in a string escape")
				return ""
			}
			esc := d.s[i+1]
			i += 2
			switch esc {
			case '"', '\\', '/':
				b = append(b, esc)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, ok := hex4(d.s, i)
				if !ok {
					d.i = i
					d.fail("invalid \\u escape in a string")
					return ""
				}
				i += 4
				if r1 := r; utf16.IsSurrogate(r1) {
					r = unicode.ReplacementChar
					if i+1 < len(d.s) && d.s[i] == '\\' && d.s[i+1] == 'u' {
						r2, ok := hex4(d.s, i+2)
						if !ok {
							d.i = i + 2
							d.fail("invalid \\u escape in a string")
							return ""
						}
						if pair := utf16.DecodeRune(r1, r2); pair != unicode.ReplacementChar {
							r = pair
							i += 6
						}
					}
				}
				b = utf8.AppendRune(b, r)
			default:
				d.i = i - 1
				d.fail("invalid escape character %q in a string", esc)
				return ""
			}
		}
	}
	d.i = len(d.s)
	d.fail("unexpected end in a string")
	return ""
}

// hex4 reads the four hex digits of a \u escape at s[i:].
func hex4(s string, i int) (rune, bool) {
	if len(s)-i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range []byte(s[i : i+4]) {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// number reads a number: an int64 when its literal has no fraction or
// exponent and fits, a float64 otherwise (see Number); a literal no
// float64 holds is kept as a string with d.lenient, and is an
// *outOfRange without.
func (d *decoder) number() any {
	start := d.i
	if d.s[d.i] == '-' {
		d.i++
	}
	digits := d.i
	switch {
	case d.i < len(d.s) && d.s[d.i] == '0':
		d.i++
	case d.i < len(d.s) && d.s[d.i] >= '1' && d.s[d.i] <= '9':
		for d.i < len(d.s) && d.s[d.i] >= '0' && d.s[d.i] <= '9' {
			d.i++
		}
	default:
		return d.failByte("in a number, looking for a digit")
	}
	integer := true
	if d.i < len(d.s) && d.s[d.i] == '.' {
		integer = false
		d.i++
		if !d.digits() {
			return d.failByte("after a decimal point, looking for a digit")
		}
	}
	if d.i < len(d.s) && (d.s[d.i] == 'e' || d.s[d.i] == 'E') {
		integer = false
		d.i++
		if d.i < len(d.s) && (d.s[d.i] == '+' || d.s[d.i] == '-') {
			d.i++
		}
		if !d.digits() {
			return d.failByte("in an exponent, looking for a digit")
		}
	}
	lit := d.s[start:d.i]
	if integer && d.i-digits <= 18 { // fits in int64 with no check
		var n int64
		for _, c := range []byte(d.s[digits:d.i]) {
			n = n*10 + int64(c-'0')
		}
		if digits > start {
			n = -n
		}
		return n
	}
	var v any
	if integer {
		v = Number(lit)
	} else if f, err := strconv.ParseFloat(lit, 64); err == nil {
		v = f
	} else {
		v = lit
	}
	if _, ok := v.(string); ok && !d.lenient {
		// The payload fails for it only if it is JSON otherwise (a
		// syntax error anywhere is the error to report) and if a later
		// duplicate key does not replace it: see decode.
		d.outOfRange = true
		return &outOfRange{lit: lit, at: start}
	}
	return v
}

// digits reads one or more decimal digits.
func (d *decoder) digits() bool {
	start := d.i
	for d.i < len(d.s) && d.s[d.i] >= '0' && d.s[d.i] <= '9' {
		d.i++
	}
	return d.i > start
}

// outOfRange is a number no float64 holds, at offset at, in a value
// being decoded strictly: the payload fails if one is left in the value.
type outOfRange struct {
	lit string
	at  int
}

// firstOutOfRange returns the *outOfRange in v with the lowest offset, or
// nil if v holds none (a duplicate key replaced each).
func firstOutOfRange(v any) *outOfRange {
	var first *outOfRange
	keep := func(n *outOfRange) {
		if n != nil && (first == nil || n.at < first.at) {
			first = n
		}
	}
	switch t := v.(type) {
	case *outOfRange:
		return t
	case map[string]any:
		for _, x := range t {
			keep(firstOutOfRange(x))
		}
	case []any:
		for _, x := range t {
			keep(firstOutOfRange(x))
		}
	}
	return first
}
