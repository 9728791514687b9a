package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
)

// actionType is the schemas.Action type this executor handles.
const actionType = "webhook"

// wireAction is schemas.Action as read from the actions topic, with the
// payload kept as raw bytes so the POST body is exactly what the rule
// rendered (the outer Payload field shadows the embedded one).
type wireAction struct {
	schemas.Action
	Payload json.RawMessage `json:"payload"`
}

// decodeAction decodes an actions-topic record value. Numbers in Params
// stay json.Number so nothing is rounded.
func decodeAction(value []byte) (wireAction, error) {
	var a wireAction
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	if err := dec.Decode(&a); err != nil {
		return wireAction{}, fmt.Errorf("decode action record: %w", err)
	}
	if dec.More() {
		return wireAction{}, errors.New("decode action record: trailing data after the JSON object")
	}
	return a, nil
}

// idempotencyKey is the key the target sees: the action's Key, else the
// action record's key.
func (a *wireAction) idempotencyKey(recordKey []byte) string {
	if a.Key != "" {
		return a.Key
	}
	return string(recordKey)
}

// maxActionTimeout bounds an action's "timeout" param.
const maxActionTimeout = 5 * time.Minute

// request is one webhook firing, checked and ready to send.
type request struct {
	key     string
	url     string
	target  string // scheme://host:port: requests in flight are capped per target
	rule    string // with target, the unit that a hung rule cannot pass
	headers http.Header
	secret  []byte
	body    []byte
	timeout time.Duration // the action's "timeout"; 0: Options.RequestTimeout
}

// reserved are request headers the executor owns or the transport sets;
// the action's headers cannot set them.
var reserved = map[string]bool{
	"Content-Type":       true,
	"Content-Length":     true,
	"Transfer-Encoding":  true,
	"Connection":         true,
	"Host":               true,
	HeaderIdempotencyKey: true,
	HeaderSignature:      true,
	HeaderTimestamp:      true,
}

// newRequest builds the request of a decoded webhook action. recordKey is
// the action record's key, used when the action carries no Key.
// defaultSecret signs when the action has no Params["secret"].
func newRequest(a *wireAction, recordKey []byte, defaultSecret []byte) (*request, error) {
	key := a.idempotencyKey(recordKey)
	if key == "" {
		return nil, errors.New("action has no idempotency key")
	}
	if !validHeaderValue(key) {
		return nil, fmt.Errorf("idempotency key %q is not a valid header value", key)
	}
	rawURL, ok := a.Params["url"].(string)
	if !ok || rawURL == "" {
		return nil, errors.New(`action params have no "url" string`)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse webhook url: %w", err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("webhook url %q: want an absolute http or https URL", u.Redacted())
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	r := &request{
		key:     key,
		url:     u.String(),
		target:  scheme + "://" + strings.ToLower(u.Hostname()) + ":" + port,
		rule:    a.Rule,
		headers: http.Header{},
		secret:  defaultSecret,
		body:    a.Payload,
	}
	if len(r.body) == 0 {
		r.body = []byte("null")
	}
	if s, ok := a.Params["secret"]; ok {
		str, ok := s.(string)
		if !ok {
			return nil, fmt.Errorf(`action param "secret" is a %T, want a string`, s)
		}
		r.secret = []byte(str)
	}
	if v, ok := a.Params["timeout"]; ok && v != nil {
		d, err := actionTimeout(v)
		if err != nil {
			return nil, err
		}
		r.timeout = d
	}
	if h, ok := a.Params["headers"]; ok && h != nil {
		m, ok := h.(map[string]any)
		if !ok {
			return nil, fmt.Errorf(`action param "headers" is a %T, want an object`, h)
		}
		for name, v := range m {
			if err := addHeader(r.headers, name, v); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// actionTimeout reads the "timeout" param: seconds, a number in
// (0, 300].
func actionTimeout(v any) (time.Duration, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf(`action param "timeout" is a %T, want a number of seconds`, v)
	}
	sec, err := n.Float64()
	if err != nil || !(sec > 0) || sec > maxActionTimeout.Seconds() {
		return 0, fmt.Errorf(`action param "timeout" is %s, want seconds in (0, %.0f]`, n, maxActionTimeout.Seconds())
	}
	return time.Duration(sec * float64(time.Second)), nil
}

// addHeader adds one configured header; values are strings, numbers,
// booleans or arrays of those.
func addHeader(h http.Header, name string, v any) error {
	if !validHeaderName(name) {
		return fmt.Errorf("header name %q is not a valid HTTP token", name)
	}
	canon := http.CanonicalHeaderKey(name)
	if reserved[canon] {
		return nil
	}
	values, ok := v.([]any)
	if !ok {
		values = []any{v}
	}
	for _, v := range values {
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case json.Number:
			s = v.String()
		case bool:
			s = fmt.Sprint(v)
		default:
			return fmt.Errorf("header %q has a %T value, want a string", name, v)
		}
		if !validHeaderValue(s) {
			return fmt.Errorf("header %q value contains control characters", name)
		}
		h.Add(canon, s)
	}
	return nil
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s has no control characters but tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
