package document

import (
	"math"
	"unicode/utf8"
)

// Update is a parsed and validated update request document.
type Update struct {
	// State is the request's state node as sent (a map, or nil for
	// "state": null, which clears desired and reported).
	State map[string]any
	// StateNull is set for "state": null.
	StateNull bool
	// Desired and Reported are the parts of the state, with presence.
	Desired, Reported       any
	HasDesired, HasReported bool
	// ClientToken is echoed in every response when HasClientToken.
	ClientToken    string
	HasClientToken bool
	// Version, when HasVersion, must equal the shadow's version.
	Version    int64
	HasVersion bool

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

// parseToken reads clientToken and version from a request object.
func parseToken(obj map[string]any, lim Limits) (Token, *Error) {
	var t Token
	if v, ok := obj["clientToken"]; ok {
		s, isStr := v.(string)
		if !isStr || len(s) > lim.MaxClientToken {
			return t, ErrInvalidToken
		}
		t.ClientToken, t.HasClientToken = s, true
	}
	if v, ok := obj["version"]; ok && v != nil {
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
	tok, err := parseToken(obj, lim)
	u.ClientToken, u.HasClientToken = tok.ClientToken, tok.HasClientToken
	u.Version, u.HasVersion = tok.Version, tok.HasVersion
	if err != nil {
		return u, err
	}
	st, ok := obj["state"]
	if !ok {
		return u, ErrMissingState
	}
	if st == nil {
		u.StateNull = true
		return u, nil
	}
	state, ok := st.(map[string]any)
	if !ok {
		return u, ErrStateNotObject
	}
	u.State = state
	// Checks run in a fixed order so that a request with several faults
	// always gets the same answer.
	invalid := ""
	for k := range state {
		if k != "desired" && k != "reported" && (invalid == "" || k < invalid) {
			invalid = k
		}
	}
	if invalid != "" {
		return u, ErrInvalidNode(invalid)
	}
	u.Desired, u.HasDesired = state["desired"]
	if _, isObj := u.Desired.(map[string]any); !isObj && u.Desired != nil {
		return u, ErrDesiredNotObject
	}
	u.Reported, u.HasReported = state["reported"]
	if _, isObj := u.Reported.(map[string]any); !isObj && u.Reported != nil {
		return u, ErrReportedNotObject
	}
	if tooDeep(u.Desired, 1, lim.MaxDepth) || tooDeep(u.Reported, 1, lim.MaxDepth) {
		return u, ErrTooDeep(lim.MaxDepth)
	}
	if nullInArray(u.Desired) || nullInArray(u.Reported) {
		return u, ErrNullInArray
	}
	return u, nil
}

// tooDeep reports a non-empty object or array nested deeper than max
// (the section itself is level 1).
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
