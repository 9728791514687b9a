package schemas

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// HeaderCommand carries, on an outbound record that is a command, the
// command's id (its action's idempotency key).
const HeaderCommand = "iot.command"

// Delivery outcomes: what an ingest node did with a command.
const (
	// Delivered: handed to a connected subscriber.
	Delivered = "delivered"
	// Queued: kept for an offline persistent session, sent when it
	// reconnects.
	Queued = "queued"
	// NoSubscriber: no session on the node subscribes to its topic.
	NoSubscriber = "no_subscriber"
)

// Delivery is one ingest node's report of what it did with a command, a
// record of the deliveries topic keyed by the command id.
type Delivery struct {
	Command string `json:"command"`
	Topic   string `json:"topic"`
	Node    string `json:"node"`
	Outcome string `json:"outcome"`
	// At is when the node routed it, Unix ms.
	At int64 `json:"at"`
}

// Record encodes d as a record of the deliveries topic named topic.
func (d *Delivery) Record(topic string) *kgo.Record {
	b, _ := json.Marshal(d) // only strings and a number: cannot fail
	return &kgo.Record{Topic: topic, Key: []byte(d.Command), Value: b}
}

// DecodeDelivery reads a delivery report.
func DecodeDelivery(r *kgo.Record) (Delivery, error) {
	var d Delivery
	if err := json.Unmarshal(r.Value, &d); err != nil {
		return d, fmt.Errorf("decode delivery report: %w", err)
	}
	if d.Command == "" || (d.Outcome != Delivered && d.Outcome != Queued && d.Outcome != NoSubscriber) {
		return d, fmt.Errorf("decode delivery report: no command or an unknown outcome %q", d.Outcome)
	}
	return d, nil
}

// ReplyTopic is the MQTT topic a device acknowledges command id on:
// cmd/{thing}/{id}/reply.
func ReplyTopic(thing, id string) string { return "cmd/" + thing + "/" + id + "/reply" }

// ParseReply reads the thing and the command id from a reply topic (see
// ReplyTopic); ok is false for any other topic. A thing name has no "/",
// so the thing is the second level and the id what lies between it and
// the last.
func ParseReply(topic string) (thing, id string, ok bool) {
	rest, ok := strings.CutPrefix(topic, "cmd/")
	if !ok {
		return "", "", false
	}
	rest, ok = strings.CutSuffix(rest, "/reply")
	if !ok {
		return "", "", false
	}
	thing, id, ok = strings.Cut(rest, "/")
	if !ok || thing == "" || id == "" {
		return "", "", false
	}
	return thing, id, true
}

// Outbound is a message for ingest to deliver to MQTT subscribers. On the
// outbound topic the record key is the thing (or client) it concerns, the
// value is the MQTT payload, and the headers carry the MQTT topic, QoS,
// retain flag and, for answers to a waiting HTTP caller, the request id.
type Outbound struct {
	// Topic is the MQTT topic to publish to.
	Topic string
	// QoS is the MQTT QoS to publish with (0 or 1).
	QoS byte
	// Retain asks ingest to retain the message.
	Retain bool
	// Key is the record key (thing name); it orders one thing's messages.
	Key string
	// Payload is the MQTT payload.
	Payload []byte
	// RequestID, when set, correlates the message with a waiting caller.
	RequestID string
}

// Record encodes o as a record of the outbound topic named topic.
func (o *Outbound) Record(topic string) *kgo.Record {
	h := []kgo.RecordHeader{
		{Key: HeaderTopic, Value: []byte(o.Topic)},
		{Key: HeaderQoS, Value: []byte{'0' + o.QoS}},
	}
	if o.Retain {
		h = append(h, kgo.RecordHeader{Key: HeaderRetain, Value: []byte{'1'}})
	}
	if o.RequestID != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderRequestID, Value: []byte(o.RequestID)})
	}
	return &kgo.Record{Topic: topic, Key: []byte(o.Key), Value: o.Payload, Headers: h}
}

// DecodeOutbound reads an outbound message from a record.
func DecodeOutbound(r *kgo.Record) Outbound {
	o := Outbound{Key: string(r.Key), Payload: r.Value}
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderTopic:
			o.Topic = string(h.Value)
		case HeaderQoS:
			if q, err := strconv.Atoi(string(h.Value)); err == nil && q >= 0 && q <= 2 {
				o.QoS = byte(q)
			}
		case HeaderRetain:
			o.Retain = string(h.Value) == "1"
		case HeaderRequestID:
			o.RequestID = string(h.Value)
		}
	}
	return o
}
