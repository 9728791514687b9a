package replay

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/segmentio/encoding/json"
)

// eventLine is one line of iotpipe events --json: the rules test input
// (rulesql/ruletest.Event) plus where the event is in the log. Feeding
// the lines to iotpipe rules test gives the rules the events as the
// stream gave them.
type eventLine struct {
	Topic     string          `json:"topic"`
	Payload   json.RawMessage `json:"payload"`
	ClientID  string          `json:"clientid"`
	Principal string          `json:"principal"`
	Thing     string          `json:"thing"`
	Timestamp int64           `json:"timestamp"`
	Type      string          `json:"type"`
	Partition int32           `json:"partition"`
	Offset    int64           `json:"offset"`
	QoS       byte            `json:"qos"`
	Retain    bool            `json:"retain,omitempty"`
	// ReceivedNS is the receive time in Unix ns (timestamp is in ms).
	ReceivedNS int64 `json:"received_ns"`
	// PayloadBase64 holds the exact bytes of a payload that is not
	// UTF-8 text (payload then holds it with U+FFFD in place of the
	// invalid bytes).
	PayloadBase64 string `json:"payload_base64,omitempty"`
	// Error says why the record's envelope could not be decoded.
	Error string `json:"error,omitempty"`
}

// AppendJSON appends ev as one line of iotpipe events --json (with the
// newline).
func AppendJSON(dst []byte, ev *Event) ([]byte, error) {
	l := eventLine{
		Topic: ev.Envelope.Topic, ClientID: ev.Envelope.ClientID, Principal: ev.Envelope.Principal, Thing: ev.Thing,
		Timestamp: ev.Time().UnixMilli(), Type: string(ev.Envelope.Type), Partition: ev.Partition, Offset: ev.Offset,
		QoS: ev.Envelope.QoS, Retain: ev.Envelope.Retain, ReceivedNS: ev.Time().UnixNano(),
	}
	if ev.Err != nil {
		l.Error = ev.Err.Error()
	}
	l.Payload, l.PayloadBase64 = payloadJSON(ev.Payload)
	// No HTML escaping: a JSON payload stays byte for byte as it came.
	out, err := json.Append(dst, &l, 0)
	if err != nil {
		return dst, fmt.Errorf("encode event %d/%d: %w", ev.Partition, ev.Offset, err)
	}
	return append(out, '\n'), nil
}

// payloadJSON returns the payload as rules test reads it back to the
// same bytes: a JSON payload as it is when it is one line without
// surrounding space and not a string; anything else as a JSON string of
// its bytes (rules test decodes a string payload that is JSON as JSON).
// A payload that is not UTF-8 cannot be a JSON string: its exact bytes
// come in base64 beside it.
func payloadJSON(p []byte) (json.RawMessage, string) {
	if len(p) > 0 && p[0] != '"' && len(bytes.TrimSpace(p)) == len(p) && !bytes.ContainsAny(p, "\r\n") && json.Valid(p) {
		return json.RawMessage(p), ""
	}
	b, _ := json.Marshal(string(p)) // a string always encodes
	if !utf8.Valid(p) {
		return b, base64.StdEncoding.EncodeToString(p)
	}
	return b, ""
}

// AppendText appends ev as one human-readable line: receive time (UTC),
// partition/offset, type, thing (and client when it differs), topic,
// QoS and retain of a publish, and the payload (text as it is, quoted
// when it holds control characters; anything else in base64).
func AppendText(dst []byte, ev *Event) []byte {
	dst = ev.Time().UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000Z")
	dst = fmt.Appendf(dst, "  %d/%d  ", ev.Partition, ev.Offset)
	if ev.Err != nil {
		dst = fmt.Appendf(dst, "undecodable (%v)  %s", ev.Err, ev.Thing)
	} else {
		env := &ev.Envelope
		dst = fmt.Appendf(dst, "%-12s %s", env.Type, ev.Thing)
		if env.ClientID != ev.Thing {
			dst = fmt.Appendf(dst, " (client %s)", env.ClientID)
		}
		dst = append(append(dst, "  "...), env.Topic...)
		if env.Type == "publish" {
			dst = append(dst, "  qos="...)
			dst = strconv.AppendInt(dst, int64(env.QoS), 10)
			if env.Retain {
				dst = append(dst, " retain"...)
			}
		}
	}
	dst = append(dst, "  "...)
	switch {
	case !utf8.Valid(ev.Payload):
		dst = append(dst, "base64:"...)
		dst = base64.StdEncoding.AppendEncode(dst, ev.Payload)
	case bytes.ContainsFunc(ev.Payload, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }):
		dst = strconv.AppendQuote(dst, string(ev.Payload))
	default:
		dst = append(dst, ev.Payload...)
	}
	return append(dst, '\n')
}
