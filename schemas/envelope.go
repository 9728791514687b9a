// Package schemas defines what iotpipe writes to its log: the event
// envelope carried in Kafka record headers, the topic names, and the
// ClickHouse DDL. It is the ground floor: it imports no other iotpipe
// package.
package schemas

import (
	"errors"
	"fmt"
	"strconv"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"
)

// EnvelopeVersion is the envelope version this build writes.
//
// Version rule: adding an optional header keeps the version (decoders
// ignore headers they do not know and leave missing optional fields at
// their zero value). Changing the meaning or encoding of an existing
// header, or making a new header required, increments the version.
// Decoders accept every version from 1 up to EnvelopeVersion and reject
// newer ones with ErrFutureVersion, so an old processor never guesses at
// a record written by a newer ingest (the record goes to the DLQ).
const EnvelopeVersion = 1

// Header keys of the envelope. They are short, printable and stable:
// `kcat -f '%h'` shows them as they are.
const (
	HeaderVersion   = "iot.v"
	HeaderType      = "iot.type"
	HeaderTopic     = "iot.topic"
	HeaderClientID  = "iot.client"
	HeaderPrincipal = "iot.principal"
	// HeaderThing is optional (added in version 1, see the version rule):
	// the registry thing the connection was attached to.
	HeaderThing     = "iot.thing"
	HeaderQoS       = "iot.qos"
	HeaderRetain    = "iot.retain"
	HeaderReceived  = "iot.rx"
	HeaderRequestID = "iot.req"
	HeaderSource    = "iot.src"
)

// EventType says what happened to produce an event.
type EventType string

// Event types written to the events topic.
const (
	EventPublish      EventType = "publish"
	EventConnected    EventType = "connected"
	EventDisconnected EventType = "disconnected"
	EventSubscribed   EventType = "subscribed"
	EventUnsubscribed EventType = "unsubscribed"
)

// ErrFutureVersion is returned by DecodeEnvelope for a record written with
// a newer envelope version than this build understands.
var ErrFutureVersion = errors.New("envelope version newer than this build")

// Envelope is the metadata of one event. The Kafka key is the thing name
// and the value is the payload exactly as received; everything else is
// here, encoded as record headers.
type Envelope struct {
	// Version is the envelope version the record was written with.
	Version int
	// Type is the kind of event.
	Type EventType
	// Topic is the MQTT topic (for publish) or the topic filter (for
	// subscribe events).
	Topic string
	// ClientID is the MQTT client id (or the HTTP caller's id).
	ClientID string
	// Principal is who authenticated: a certificate id, a token's or a
	// custom authorizer's principal, or the user name (else "anonymous")
	// in --dev mode.
	Principal string
	// Thing is the registry thing the connection is attached to, "" when
	// none (--dev, a principal attached to no thing). The record key is
	// this thing (see EventKey).
	Thing string
	// QoS is the MQTT quality of service of the publish.
	QoS byte
	// Retain is the MQTT retain flag of the publish.
	Retain bool
	// ReceivedAt is when ingest received the event, in Unix nanoseconds.
	ReceivedAt int64
	// RequestID, when set, correlates the event with a waiting caller (an
	// HTTP shadow update answered once applied).
	RequestID string
}

// Headers encodes e as Kafka record headers, always at EnvelopeVersion.
// Empty optional fields are left out.
func (e *Envelope) Headers() []kgo.RecordHeader {
	return e.AppendHeaders(make([]kgo.RecordHeader, 0, 10))
}

// AppendHeaders appends e's headers to dst. All header values share one
// allocation (this runs once per device message).
func (e *Envelope) AppendHeaders(dst []kgo.RecordHeader) []kgo.RecordHeader {
	arena := make([]byte, 0, 2+len(e.Type)+len(e.Topic)+len(e.ClientID)+len(e.Principal)+len(e.Thing)+len(e.RequestID)+22)
	add := func(key string, from int) {
		dst = append(dst, kgo.RecordHeader{Key: key, Value: arena[from:len(arena):len(arena)]})
	}
	at := len(arena)
	arena = append(arena, '0'+EnvelopeVersion)
	add(HeaderVersion, at)
	at = len(arena)
	arena = append(arena, e.Type...)
	add(HeaderType, at)
	if e.Topic != "" {
		at = len(arena)
		arena = append(arena, e.Topic...)
		add(HeaderTopic, at)
	}
	if e.ClientID != "" {
		at = len(arena)
		arena = append(arena, e.ClientID...)
		add(HeaderClientID, at)
	}
	if e.Principal != "" {
		at = len(arena)
		arena = append(arena, e.Principal...)
		add(HeaderPrincipal, at)
	}
	if e.Thing != "" {
		at = len(arena)
		arena = append(arena, e.Thing...)
		add(HeaderThing, at)
	}
	if e.Type == EventPublish {
		at = len(arena)
		arena = append(arena, '0'+e.QoS)
		add(HeaderQoS, at)
		if e.Retain {
			at = len(arena)
			arena = append(arena, '1')
			add(HeaderRetain, at)
		}
	}
	at = len(arena)
	arena = strconv.AppendInt(arena, e.ReceivedAt, 10)
	add(HeaderReceived, at)
	if e.RequestID != "" {
		at = len(arena)
		arena = append(arena, e.RequestID...)
		add(HeaderRequestID, at)
	}
	return dst
}

// DecodeEnvelope reads an envelope from record headers. It fails on a
// missing or unknown version, a missing type, or a malformed number.
func DecodeEnvelope(headers []kgo.RecordHeader) (Envelope, error) {
	var e Envelope
	// The string fields share one allocation (arena), and known event
	// types none.
	var arena []byte
	n := 0
	for _, h := range headers {
		switch h.Key {
		case HeaderTopic, HeaderClientID, HeaderPrincipal, HeaderThing, HeaderRequestID:
			n += len(h.Value)
		case HeaderType:
			if knownType(h.Value) == "" {
				n += len(h.Value)
			}
		}
	}
	if n > 0 {
		arena = make([]byte, 0, n)
	}
	str := func(b []byte) string {
		if len(b) == 0 {
			return ""
		}
		start := len(arena)
		arena = append(arena, b...)
		// arena is never written again where it was read: its strings
		// are immutable, as strings must be.
		return unsafe.String(&arena[start], len(b))
	}
	for _, h := range headers {
		switch h.Key {
		case HeaderVersion:
			v, err := strconv.Atoi(string(h.Value))
			if err != nil || v < 1 {
				return e, fmt.Errorf("envelope: bad version %q", h.Value)
			}
			e.Version = v
		case HeaderType:
			if e.Type = knownType(h.Value); e.Type == "" {
				e.Type = EventType(str(h.Value))
			}
		case HeaderTopic:
			e.Topic = str(h.Value)
		case HeaderClientID:
			e.ClientID = str(h.Value)
		case HeaderPrincipal:
			e.Principal = str(h.Value)
		case HeaderThing:
			e.Thing = str(h.Value)
		case HeaderQoS:
			if len(h.Value) != 1 || h.Value[0] < '0' || h.Value[0] > '2' {
				return e, fmt.Errorf("envelope: bad qos %q", h.Value)
			}
			e.QoS = h.Value[0] - '0'
		case HeaderRetain:
			e.Retain = len(h.Value) == 1 && h.Value[0] == '1'
		case HeaderReceived:
			n, err := strconv.ParseInt(string(h.Value), 10, 64)
			if err != nil {
				return e, fmt.Errorf("envelope: bad receive time %q", h.Value)
			}
			e.ReceivedAt = n
		case HeaderRequestID:
			e.RequestID = str(h.Value)
		}
	}
	switch {
	case e.Version == 0:
		return e, errors.New("envelope: no version header (not an iotpipe event?)")
	case e.Version > EnvelopeVersion:
		return e, fmt.Errorf("envelope: version %d: %w (%d)", e.Version, ErrFutureVersion, EnvelopeVersion)
	case e.Type == "":
		return e, errors.New("envelope: no type header")
	}
	return e, nil
}

// knownType returns the EventType constant b spells, or "".
func knownType(b []byte) EventType {
	for _, t := range [...]EventType{EventPublish, EventConnected, EventDisconnected, EventSubscribed, EventUnsubscribed} {
		if string(b) == string(t) {
			return t
		}
	}
	return ""
}

// HeaderValue returns the value of the first header named key, or nil.
func HeaderValue(headers []kgo.RecordHeader, key string) []byte {
	for _, h := range headers {
		if h.Key == key {
			return h.Value
		}
	}
	return nil
}
