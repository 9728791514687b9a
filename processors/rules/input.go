package rules

import (
	"fmt"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/schemas/payload"
)

// storedInput is an event kept in state so that an output produced later
// (a window closing, a duration timer firing on a tick) can be built and
// its action templates rendered against the event it stands for.
type storedInput struct {
	Topic     string `json:"topic"`
	ClientID  string `json:"clientid,omitempty"`
	Principal string `json:"principal,omitempty"`
	Thing     string `json:"thing,omitempty"`
	Timestamp int64  `json:"ts"`
	Partition int32  `json:"p"`
	Offset    int64  `json:"o"`
	Raw       []byte `json:"raw"`
}

func encodeInput(in *rulesql.Input) ([]byte, error) {
	b, err := json.Marshal(storedInput{
		Topic: in.Topic, ClientID: in.ClientID, Principal: in.Principal, Thing: in.Thing,
		Timestamp: in.Timestamp, Partition: in.Partition, Offset: in.Offset, Raw: in.Raw,
	})
	if err != nil {
		return nil, fmt.Errorf("encode event for state: %w", err)
	}
	return b, nil
}

// decodeInput decodes a stored event; its get_thing_shadow() reads
// through tx at the event's time.
func (p *Processor) decodeInput(tx *processors.Tx, b []byte) (*rulesql.Input, error) {
	var s storedInput
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode stored event: %w", err)
	}
	in := p.newInput(tx, time.UnixMilli(s.Timestamp))
	in.Raw, in.Topic, in.ClientID, in.Principal, in.Thing = s.Raw, s.Topic, s.ClientID, s.Principal, s.Thing
	in.Timestamp, in.Partition, in.Offset = s.Timestamp, s.Partition, s.Offset
	if v, err := payload.Decode(s.Raw); err == nil {
		in.Payload = v
	} else {
		in.Payload = rulesql.Undefined
	}
	return in, nil
}
