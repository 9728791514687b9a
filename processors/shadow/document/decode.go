package document

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/iotpipe/iotpipe/schemas/payload"
)

// maxFastDepth bounds the nesting decodeFast handles; deeper documents
// go to payload.Decode.
const maxFastDepth = 32

// decodePayload decodes a request payload into the payload
// representation: the same value and error payload.Decode gives, but
// for the common request (no string escapes, no duplicate keys, numbers
// that fit) without its intermediate json.Number values and second
// pass.
func decodePayload(raw []byte) (any, error) {
	if v, ok := decodeFast(raw); ok {
		return v, nil
	}
	return payload.Decode(raw)
}

// decodeFast parses raw as one JSON value into the payload
// representation (map[string]any, []any, string, bool, nil, int64,
// float64). It handles strict JSON only, and of that only what it can
// decode exactly as payload.Decode does: it reports false for anything
// else (a string with an escape or invalid UTF-8, a duplicate key, an
// integer of more than 18 digits, a float out of range, whitespace other
// than JSON's, nesting deeper than maxFastDepth, and every invalid
// document), and the caller then uses payload.Decode. Keys and strings
// are substrings of one copy of raw.
func decodeFast(raw []byte) (any, bool) {
	if len(raw) == 0 {
		return nil, false
	}
	d := newDecoder(raw)
	defer d.release()
	d.ws()
	v, ok := d.value(0)
	if !ok {
		return nil, false
	}
	d.ws()
	return v, d.i == len(d.s)
}

// decodeFastRequest is decodeFast of a request object, keeping only the
// fields the shadow reads (the others are checked and dropped), so that
// no map is built for the object itself. It reports false where
// decodeFast would, and for a value that is not an object or an object
// with more than 8 other keys.
func decodeFastRequest(raw []byte) (requestFields, bool) {
	var f requestFields
	d := newDecoder(raw)
	defer d.release()
	d.ws()
	if d.i >= len(d.s) || d.s[d.i] != '{' {
		return f, false
	}
	members, ok := d.members(1, membersRequest)
	if !ok {
		return f, false
	}
	d.ws()
	if d.i != len(d.s) {
		return f, false
	}
	var otherBuf [8]string
	other := otherBuf[:0]
	for _, m := range members {
		var dup bool
		switch m.key {
		case "state":
			dup, f.state, f.hasState = f.hasState, m.val, true
		case "clientToken":
			dup, f.clientToken, f.hasClientToken = f.hasClientToken, m.val, true
		case "version":
			dup, f.version, f.hasVersion = f.hasVersion, m.val, true
		default:
			for _, o := range other {
				dup = dup || o == m.key
			}
			if len(other) == cap(other) {
				return f, false
			}
			other = append(other, m.key)
		}
		if dup {
			return f, false
		}
	}
	return f, true
}

type fastDecoder struct {
	s string
	i int
	// slab holds the fields of every object patchObject builds, so that
	// a request's state takes one allocation.
	slab object
	// stack holds the members of the objects being read (see members).
	stack []field
}

// decoders keeps decoders with their member stacks between requests.
var decoders = sync.Pool{New: func() any { return &fastDecoder{stack: make([]field, 0, 32)} }}

// newDecoder returns a decoder of one copy of raw; release returns it.
func newDecoder(raw []byte) *fastDecoder {
	d := decoders.Get().(*fastDecoder)
	d.s, d.i = string(raw), 0
	return d
}

// release returns d to the pool, keeping nothing of what it decoded.
func (d *fastDecoder) release() {
	// Members above len were cleared when popped.
	clear(d.stack)
	stack := d.stack[:0]
	if cap(stack) > 256 {
		stack = make([]field, 0, 32) // a rare huge document's stack is not kept
	}
	*d = fastDecoder{stack: stack}
	decoders.Put(d)
}

// fields returns n fields from the slab, sized on first use for every
// key the document can hold (each is followed by a colon).
func (d *fastDecoder) fields(n int) object {
	if d.slab == nil {
		d.slab = make(object, 0, max(strings.Count(d.s, ":"), n))
	}
	if len(d.slab)+n > cap(d.slab) {
		return make(object, n)
	}
	start := len(d.slab)
	d.slab = d.slab[:start+n]
	return d.slab[start : start+n : start+n]
}

func (d *fastDecoder) ws() {
	for d.i < len(d.s) {
		switch d.s[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *fastDecoder) value(depth int) (any, bool) {
	if d.i >= len(d.s) {
		return nil, false
	}
	switch c := d.s[d.i]; {
	case c == '{':
		return d.object(depth + 1)
	case c == '[':
		return d.array(depth + 1)
	case c == '"':
		s, ok := d.str()
		if !ok {
			return nil, false
		}
		return s, true
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	}
	return nil, false
}

func (d *fastDecoder) literal(lit string) bool {
	if len(d.s)-d.i < len(lit) || d.s[d.i:d.i+len(lit)] != lit {
		return false
	}
	d.i += len(lit)
	return true
}

// str reads a string with no escapes.
func (d *fastDecoder) str() (string, bool) {
	d.i++
	start := d.i
	ascii := true
	for ; d.i < len(d.s); d.i++ {
		c := d.s[d.i]
		switch {
		case c == '"':
			s := d.s[start:d.i]
			d.i++
			if !ascii && !utf8.ValidString(s) {
				return "", false
			}
			return s, true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", false
}

func (d *fastDecoder) object(depth int) (any, bool) {
	members, ok := d.members(depth, membersValue)
	if !ok {
		return nil, false
	}
	defer d.pop(members)
	m := make(map[string]any, len(members))
	for _, f := range members {
		m[f.key] = f.val
	}
	if len(m) != len(members) {
		return nil, false // a duplicate key
	}
	return m, true
}

// How members reads the values of an object's members.
const (
	membersValue   = iota // every value with value
	membersPatch          // every value with patchValue
	membersRequest        // "state" with patchValue, the others with value
)

// members reads the object at d.i ('{') whose nesting depth is depth
// and returns its members in order, their values read as mode says, on
// the decoder's member stack: valid until the caller pops them (the
// members of nested objects are pushed and popped above them). It
// reports false on a syntax error and on nesting deeper than
// maxFastDepth; it does not look for duplicate keys.
func (d *fastDecoder) members(depth int, mode int) ([]field, bool) {
	if depth > maxFastDepth {
		return nil, false
	}
	start := len(d.stack)
	d.i++
	d.ws()
	if d.i < len(d.s) && d.s[d.i] == '}' {
		d.i++
		return d.stack[start:], true
	}
	for {
		if d.i >= len(d.s) || d.s[d.i] != '"' {
			return nil, false
		}
		k, ok := d.str()
		if !ok {
			return nil, false
		}
		d.ws()
		if d.i >= len(d.s) || d.s[d.i] != ':' {
			return nil, false
		}
		d.i++
		d.ws()
		var v any
		if mode == membersPatch || (mode == membersRequest && k == "state") {
			v, ok = d.patchValue(depth)
		} else {
			v, ok = d.value(depth)
		}
		if !ok {
			return nil, false
		}
		d.stack = append(d.stack, field{key: k, val: v})
		d.ws()
		if d.i >= len(d.s) {
			return nil, false
		}
		switch d.s[d.i] {
		case ',':
			d.i++
			d.ws()
		case '}':
			d.i++
			return d.stack[start:], true
		default:
			return nil, false
		}
	}
}

// pop removes members, the top of the member stack.
func (d *fastDecoder) pop(members []field) {
	clear(members)
	d.stack = d.stack[:len(d.stack)-len(members)]
}

// patchValue is value for the state of an update request: an object
// outside arrays is decoded as a sorted object, the form mergeObject
// takes (see toPatch); inside arrays, which are replaced whole, objects
// stay maps.
func (d *fastDecoder) patchValue(depth int) (any, bool) {
	if d.i < len(d.s) && d.s[d.i] == '{' {
		return d.patchObject(depth + 1)
	}
	return d.value(depth)
}

// patchObject reads an object as a sorted object; it reports false for
// a duplicate key, as object does.
func (d *fastDecoder) patchObject(depth int) (any, bool) {
	members, ok := d.members(depth, membersPatch)
	if !ok {
		return nil, false
	}
	defer d.pop(members)
	if len(members) == 0 {
		return object{}, true
	}
	o := sortFields(d.fields(len(members)), members)
	if o == nil {
		return nil, false // a duplicate key
	}
	return o, true
}

// sortFields copies fields into o (of the same length) sorted by key,
// or returns nil when two fields have the same key.
func sortFields(o object, fields []field) object {
	copy(o, fields)
	if len(o) > 12 {
		slices.SortFunc(o, func(a, b field) int { return strings.Compare(a.key, b.key) })
	} else {
		// Insertion sort: objects are small, and often sent sorted.
		for i := 1; i < len(o); i++ {
			for j := i; j > 0 && o[j].key < o[j-1].key; j-- {
				o[j], o[j-1] = o[j-1], o[j]
			}
		}
	}
	for i := 1; i < len(o); i++ {
		if o[i].key == o[i-1].key {
			return nil
		}
	}
	return o
}

func (d *fastDecoder) array(depth int) (any, bool) {
	if depth > maxFastDepth {
		return nil, false
	}
	d.i++
	d.ws()
	if d.i < len(d.s) && d.s[d.i] == ']' {
		d.i++
		return []any{}, true
	}
	a := make([]any, 0, 4)
	for {
		v, ok := d.value(depth)
		if !ok {
			return nil, false
		}
		a = append(a, v)
		d.ws()
		if d.i >= len(d.s) {
			return nil, false
		}
		switch d.s[d.i] {
		case ',':
			d.i++
			d.ws()
		case ']':
			d.i++
			return a, true
		default:
			return nil, false
		}
	}
}

// number reads a JSON number: an int64 for an integer literal (no
// fraction or exponent), a float64 otherwise, as payload.Number.
func (d *fastDecoder) number() (any, bool) {
	start := d.i
	neg := d.s[d.i] == '-'
	if neg {
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
		return nil, false
	}
	intEnd := d.i
	isInt := true
	if d.i < len(d.s) && d.s[d.i] == '.' {
		isInt = false
		d.i++
		if !d.digits() {
			return nil, false
		}
	}
	if d.i < len(d.s) && (d.s[d.i] == 'e' || d.s[d.i] == 'E') {
		isInt = false
		d.i++
		if d.i < len(d.s) && (d.s[d.i] == '+' || d.s[d.i] == '-') {
			d.i++
		}
		if !d.digits() {
			return nil, false
		}
	}
	if isInt {
		if intEnd-digits > 18 {
			return nil, false
		}
		var n int64
		for _, c := range []byte(d.s[digits:intEnd]) {
			n = n*10 + int64(c-'0')
		}
		if neg {
			n = -n
		}
		return n, true
	}
	f, err := strconv.ParseFloat(d.s[start:d.i], 64)
	if err != nil {
		return nil, false
	}
	return f, true
}

// digits reads one or more decimal digits.
func (d *fastDecoder) digits() bool {
	start := d.i
	for d.i < len(d.s) && d.s[d.i] >= '0' && d.s[d.i] <= '9' {
		d.i++
	}
	return d.i > start
}
