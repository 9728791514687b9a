package document

import (
	"math"
	"slices"
	"strings"
	"unicode/utf8"
)

// Update is a parsed and validated update request document.
type Update struct {
	// StateNull is set for "state": null (which clears desired and
	// reported).
	StateNull bool
	// HasDesired and HasReported tell which parts the state has.
	HasDesired, HasReported bool
	// ClientToken is echoed in every response when HasClientToken.
	ClientToken    string
	HasClientToken bool
	// Version, when HasVersion, must equal the shadow's version.
	Version    int64
	HasVersion bool

	// state is the request's state node as sent, as a patch (see
	// toPatch); nil for "state": null. desired and reported are its
	// parts, nil when absent, null or {}.
	state             object
	desired, reported object

	size int // payload size, to size buffers
}

// Token is the optional clientToken (and version) of a get or delete
// request.
type Token struct {
	ClientToken    string
	HasClientToken bool
	Version        int64
	HasVersion     bool
}

// requestFields are the fields of a request object the shadow reads,
// each with its presence.
type requestFields struct {
	state, clientToken, version          any
	hasState, hasClientToken, hasVersion bool
}

// fieldsOf reads the request fields of obj.
func fieldsOf(obj map[string]any) requestFields {
	var f requestFields
	f.state, f.hasState = obj["state"]
	f.clientToken, f.hasClientToken = obj["clientToken"]
	f.version, f.hasVersion = obj["version"]
	return f
}

// parseToken reads clientToken and version from a request object.
func parseToken(obj map[string]any, lim Limits) (Token, *Error) {
	return parseTokenFields(fieldsOf(obj), lim)
}

// parseTokenFields reads clientToken and version from request fields.
func parseTokenFields(f requestFields, lim Limits) (Token, *Error) {
	var t Token
	if v, ok := f.clientToken, f.hasClientToken; ok {
		s, isStr := v.(string)
		if !isStr || len(s) > lim.MaxClientToken {
			return t, ErrInvalidToken
		}
		t.ClientToken, t.HasClientToken = s, true
	}
	if v, ok := f.version, f.hasVersion; ok && v != nil {
		n, valid := version(v)
		if !valid {
			return t, ErrInvalidVersion
		}
		t.Version, t.HasVersion = n, true
	}
	return t, nil
}

func version(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, n >= 0
	case float64:
		if n >= 0 && n == math.Trunc(n) && n < 1<<62 {
			return int64(n), true
		}
	}
	return 0, false
}

// CheckPayload rejects a request payload larger than the size limit
// (413) or not UTF-8 (415). Run it before decoding the payload.
func CheckPayload(raw []byte, lim Limits) *Error {
	lim = lim.withDefaults()
	if len(raw) > lim.MaxSize {
		return ErrTooLarge
	}
	if !utf8.Valid(raw) {
		return ErrEncoding
	}
	return nil
}

// ParseRequest parses the optional payload of a get or delete request:
// empty, or a JSON object with clientToken (and version, checked by
// Delete). v is the decoded payload, err the decode error, empty whether
// the payload was empty.
func ParseRequest(v any, decodeErr error, empty bool, lim Limits) (Token, *Error) {
	lim = lim.withDefaults()
	if empty {
		return Token{}, nil
	}
	if decodeErr != nil {
		return Token{}, ErrInvalidJSON
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return Token{}, ErrInvalidJSON
	}
	return parseToken(obj, lim)
}

// ParseRequestPayload is ParseRequest of a raw get or delete payload,
// decoded here (as payload.Decode would: see decodePayload). empty is
// whether the payload is empty (blank); an empty payload is not decoded.
func ParseRequestPayload(raw []byte, empty bool, lim Limits) (Token, *Error) {
	if empty {
		return ParseRequest(nil, nil, true, lim)
	}
	if f, ok := decodeFastRequest(raw); ok {
		return parseTokenFields(f, lim.withDefaults())
	}
	v, err := decodePayload(raw)
	return ParseRequest(v, err, false, lim)
}

// ParseUpdatePayload is ParseUpdate of a raw update payload, decoded
// here: it gives the same Update and error as ParseUpdate of
// payload.Decode(raw), but decodes the common request with a
// specialised decoder (see decodePayload). A payload over the size limit
// is not decoded.
func ParseUpdatePayload(raw []byte, lim Limits) (Update, *Error) {
	if len(raw) > lim.withDefaults().MaxSize {
		return ParseUpdate(nil, nil, len(raw), lim)
	}
	if f, ok := decodeFastRequest(raw); ok {
		return parseUpdateFields(Update{size: len(raw)}, f, lim.withDefaults())
	}
	v, err := decodePayload(raw)
	return ParseUpdate(v, err, len(raw), lim)
}

// ParseUpdate validates a decoded update request (v from payload.Decode;
// decodeErr its error; size the payload's length in bytes). On error the
// returned Update still carries the clientToken when it could be read,
// so the rejection can echo it.
func ParseUpdate(v any, decodeErr error, size int, lim Limits) (Update, *Error) {
	lim = lim.withDefaults()
	u := Update{size: size}
	if size > lim.MaxSize {
		return u, ErrTooLarge
	}
	if decodeErr != nil {
		return u, ErrInvalidJSON
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return u, ErrInvalidJSON
	}
	return parseUpdateFields(u, fieldsOf(obj), lim)
}

// parseUpdateFields is ParseUpdate of a request object's fields; u
// holds the size, lim has its defaults.
func parseUpdateFields(u Update, f requestFields, lim Limits) (Update, *Error) {
	tok, err := parseTokenFields(f, lim)
	u.ClientToken, u.HasClientToken = tok.ClientToken, tok.HasClientToken
	u.Version, u.HasVersion = tok.Version, tok.HasVersion
	if err != nil {
		return u, err
	}
	st, ok := f.state, f.hasState
	if !ok {
		return u, ErrMissingState
	}
	if st == nil {
		u.StateNull = true
		return u, nil
	}
	state, ok := toPatch(st).(object)
	if !ok {
		return u, ErrStateNotObject
	}
	u.state = state
	// Checks run in a fixed order so that a request with several faults
	// always gets the same answer: an invalid key first (the smallest:
	// the fields are sorted), then desired, then reported.
	var desired, reported *field
	for i := range state {
		switch f := &state[i]; f.key {
		case "desired":
			desired = f
		case "reported":
			reported = f
		default:
			return u, ErrInvalidNode(f.key)
		}
	}
	if desired != nil {
		u.HasDesired = true
		if d, isObj := desired.val.(object); isObj {
			u.desired = d
		} else if desired.val != nil {
			return u, ErrDesiredNotObject
		}
	}
	if reported != nil {
		u.HasReported = true
		if r, isObj := reported.val.(object); isObj {
			u.reported = r
		} else if reported.val != nil {
			return u, ErrReportedNotObject
		}
	}
	// Depth is checked before nulls in arrays; one walk finds both.
	deepD, nullD := shape(u.desired, 1, lim.MaxDepth)
	deepR, nullR := false, false
	if !deepD {
		deepR, nullR = shape(u.reported, 1, lim.MaxDepth)
	}
	if deepD || deepR {
		return u, ErrTooDeep(lim.MaxDepth)
	}
	if nullD || nullR {
		return u, ErrNullInArray
	}
	return u, nil
}

// toPatch returns v with its objects outside arrays as sorted objects
// (a map becomes an object with the same keys, sorted): the form of an
// update's state that mergeObject and the accepted message take. Objects
// inside arrays stay maps, since arrays are replaced whole. An object is
// returned as it is.
func toPatch(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	o := make(object, 0, len(m))
	for k, x := range m {
		o = append(o, field{key: k, val: toPatch(x)})
	}
	slices.SortFunc(o, func(a, b field) int { return strings.Compare(a.key, b.key) })
	return o
}

// shape reports, in one walk, what tooDeep(v, level, max) and
// nullInArray(v) report; once deep is found, null is not (deep is
// rejected first).
func shape(v any, level, max int) (deep, null bool) {
	switch t := v.(type) {
	case object:
		if len(t) > 0 && level > max {
			return true, false
		}
		for i := range t {
			d, n := shape(t[i].val, level+1, max)
			if d {
				return true, false
			}
			null = null || n
		}
	case map[string]any:
		if len(t) > 0 && level > max {
			return true, false
		}
		for _, x := range t {
			d, n := shape(x, level+1, max)
			if d {
				return true, false
			}
			null = null || n
		}
	case []any:
		if len(t) > 0 && level > max {
			return true, false
		}
		for _, x := range t {
			if x == nil {
				null = true
				continue
			}
			d, n := shape(x, level+1, max)
			if d {
				return true, false
			}
			null = null || n
		}
	}
	return false, null
}

// tooDeep reports a non-empty object or array nested deeper than max
// (the section itself is level 1). ParseUpdate uses shape, which
// FuzzShape checks against tooDeep and nullInArray.
func tooDeep(v any, level, max int) bool {
	switch t := v.(type) {
	case map[string]any:
		if len(t) == 0 {
			return false
		}
		if level > max {
			return true
		}
		for _, x := range t {
			if tooDeep(x, level+1, max) {
				return true
			}
		}
	case []any:
		if len(t) == 0 {
			return false
		}
		if level > max {
			return true
		}
		for _, x := range t {
			if tooDeep(x, level+1, max) {
				return true
			}
		}
	}
	return false
}

// nullInArray reports an array holding null anywhere in v.
func nullInArray(v any) bool {
	switch t := v.(type) {
	case map[string]any:
		for _, x := range t {
			if nullInArray(x) {
				return true
			}
		}
	case []any:
		for _, x := range t {
			if x == nil || nullInArray(x) {
				return true
			}
		}
	}
	return false
}
