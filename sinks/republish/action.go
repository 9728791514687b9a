package republish

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
)

// Record headers of the outbound records this executor writes.
const (
	// HeaderAction carries the idempotency key of the action that made
	// the record (duplicates after a crash share it).
	HeaderAction = "iot.action"
	// HeaderCommand carries the command id of a command's record.
	HeaderCommand = schemas.HeaderCommand
)

// Action types this executor handles.
const (
	TypeRepublish = "republish"
	TypeCommand   = "command"
)

// wireAction is schemas.Action as read from the actions topic, with the
// payload kept as raw JSON so it is forwarded byte for byte.
type wireAction struct {
	schemas.Action
	Payload json.RawMessage `json:"payload"`
}

func decodeAction(value []byte) (*wireAction, error) {
	var a wireAction
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.UseNumber()
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("decode action record: %w", err)
	}
	return &a, nil
}

// actionKey is the action's idempotency key, or the record's key.
func actionKey(a *wireAction, rec *kgo.Record) string {
	if a.Key != "" {
		return a.Key
	}
	return string(rec.Key)
}

// payloadOf returns Params.payload (a string as is, other values as
// JSON) or else the rule's output.
func payloadOf(a *wireAction) ([]byte, error) {
	if p, ok := a.Params["payload"]; ok {
		if s, ok := p.(string); ok {
			return []byte(s), nil
		}
		b, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("encode payload param: %w", err)
		}
		return b, nil
	}
	if len(a.Payload) == 0 {
		return []byte("null"), nil
	}
	return a.Payload, nil
}

func qosOf(a *wireAction, def byte) (byte, error) {
	v, ok := a.Params["qos"]
	if !ok || v == nil {
		return def, nil
	}
	var q int64
	switch t := v.(type) {
	case json.Number:
		n, err := t.Int64()
		if err != nil {
			return 0, fmt.Errorf("qos %s is not 0 or 1", t)
		}
		q = n
	case string:
		switch t {
		case "0":
			q = 0
		case "1":
			q = 1
		default:
			return 0, fmt.Errorf("qos %q is not 0 or 1", t)
		}
	default:
		return 0, fmt.Errorf("qos is a %T, want 0 or 1", v)
	}
	if q != 0 && q != 1 {
		return 0, fmt.Errorf("qos %d is not 0 or 1", q)
	}
	return byte(q), nil
}

// republish builds the outbound message of a republish action.
func republish(a *wireAction, key string) (*schemas.Outbound, error) {
	topic, _ := a.Params["topic"].(string)
	if err := checkTopic(topic); err != nil {
		return nil, err
	}
	qos, err := qosOf(a, 0)
	if err != nil {
		return nil, err
	}
	retain := false
	switch v := a.Params["retain"].(type) {
	case nil:
	case bool:
		retain = v
	case string:
		retain = v == "true"
	default:
		return nil, fmt.Errorf("retain is a %T, want a boolean", v)
	}
	payload, err := payloadOf(a)
	if err != nil {
		return nil, err
	}
	return &schemas.Outbound{Topic: topic, QoS: qos, Retain: retain, Key: a.Thing, Payload: payload}, nil
}

// command is a command action resolved to its target.
type command struct {
	id, thing, topic, rule string
	firedAt                int64
	out                    *schemas.Outbound
}

// newCommand builds the outbound message of a command action.
func newCommand(a *wireAction, key, template string) (*command, error) {
	thing, _ := a.Params["thing"].(string)
	if thing == "" {
		thing = a.Thing
	}
	if thing == "" || strings.ContainsAny(thing, "/+#") {
		return nil, fmt.Errorf("command thing %q: want a thing name without / + #", thing)
	}
	topic, _ := a.Params["topic"].(string)
	if topic == "" {
		topic = strings.NewReplacer("{thing}", thing, "{id}", key).Replace(template)
	}
	if err := checkTopic(topic); err != nil {
		return nil, err
	}
	qos, err := qosOf(a, 1)
	if err != nil {
		return nil, err
	}
	payload, err := payloadOf(a)
	if err != nil {
		return nil, err
	}
	payload = withCommandID(payload, key, ReplyTopic(thing, key))
	return &command{id: key, thing: thing, topic: topic, rule: a.Rule, firedAt: a.FiredAt,
		out: &schemas.Outbound{Topic: topic, QoS: qos, Key: thing, Payload: payload}}, nil
}

// withCommandID adds command_id and reply_topic to a JSON object payload
// (keeping its bytes otherwise); other payloads are returned unchanged.
func withCommandID(payload []byte, id, reply string) []byte {
	t := bytes.TrimSpace(payload)
	if len(t) < 2 || t[0] != '{' {
		return payload
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(t, &m) != nil {
		return payload
	}
	var extra []byte
	add := func(k, v string) {
		if _, ok := m[k]; ok {
			return
		}
		kb, _ := json.Marshal(k)
		vb, _ := json.Marshal(v)
		extra = append(append(append(append(extra, kb...), ':'), vb...), ',')
	}
	add("command_id", id)
	add("reply_topic", reply)
	if len(extra) == 0 {
		return payload
	}
	body := bytes.TrimSpace(t[1:])
	out := append([]byte{'{'}, extra...)
	if len(body) == 1 { // "}" : the object was empty
		out = out[:len(out)-1]
	}
	return append(out, body...)
}

// ReplyTopic is the topic a device acknowledges command id on.
func ReplyTopic(thing, id string) string { return schemas.ReplyTopic(thing, id) }

func checkTopic(t string) error {
	if t == "" {
		return errors.New(`action params have no "topic"`)
	}
	if strings.ContainsAny(t, "+#\x00") {
		return fmt.Errorf("topic %q contains a wildcard or NUL", t)
	}
	return nil
}
