package schemas

import (
	"math"

	"github.com/twmb/franz-go/pkg/kgo"
)

// EnvelopeView is an Envelope whose strings alias the record headers: the
// copy-free read for hot consumers (the ClickHouse sink). It is valid only
// while the record's headers are.
type EnvelopeView struct {
	Type, Topic, ClientID, Principal, Thing, RequestID []byte
	QoS                                                byte
	Retain                                             bool
	ReceivedAt                                         int64
}

// DecodeEnvelopeView is DecodeEnvelope without copying. It reads the
// common case (every header well formed) itself and leaves anything else
// to DecodeEnvelope, which decides and explains, so both accept and
// reject the same records with the same errors.
func DecodeEnvelopeView(headers []kgo.RecordHeader) (EnvelopeView, error) {
	var (
		e       EnvelopeView
		version int64 = -1
		ok            = true
	)
	for _, h := range headers {
		switch h.Key {
		case HeaderVersion:
			version, ok = digits(h.Value)
		case HeaderType:
			e.Type = h.Value
		case HeaderTopic:
			e.Topic = h.Value
		case HeaderClientID:
			e.ClientID = h.Value
		case HeaderPrincipal:
			e.Principal = h.Value
		case HeaderThing:
			e.Thing = h.Value
		case HeaderQoS:
			ok = len(h.Value) == 1 && h.Value[0] >= '0' && h.Value[0] <= '2'
			if ok {
				e.QoS = h.Value[0] - '0'
			}
		case HeaderRetain:
			e.Retain = len(h.Value) == 1 && h.Value[0] == '1'
		case HeaderReceived:
			e.ReceivedAt, ok = digits(h.Value)
		case HeaderRequestID:
			e.RequestID = h.Value
		}
		if !ok {
			break
		}
	}
	if ok && version >= 1 && version <= EnvelopeVersion && len(e.Type) > 0 {
		return e, nil
	}
	env, err := DecodeEnvelope(headers)
	if err != nil {
		return e, err
	}
	return env.View(), nil
}

// View returns e as an EnvelopeView (copying its strings).
func (e *Envelope) View() EnvelopeView {
	return EnvelopeView{
		Type: []byte(e.Type), Topic: []byte(e.Topic), ClientID: []byte(e.ClientID), Principal: []byte(e.Principal),
		Thing: []byte(e.Thing), RequestID: []byte(e.RequestID), QoS: e.QoS, Retain: e.Retain, ReceivedAt: e.ReceivedAt,
	}
}

// digits parses 1 to 19 decimal digits that fit an int64.
func digits(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return int64(n), n <= math.MaxInt64
}
