package rules

import (
	"encoding/binary"
	"errors"
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
//
// It is stored in a binary form (storedVersion, then the strings with
// their uvarint lengths, the numbers as varints, and the payload as the
// rest); state written before that form holds it as JSON (these json
// tags), which starts with '{' and is still read.
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

// storedVersion is the first byte of the binary forms of a stored event
// and of an episode record.
const storedVersion = 1

// errCorrupt is wrapped by errors about stored values that do not decode.
var errCorrupt = errors.New("corrupt")

// appendInput appends the stored form of in to b.
func appendInput(b []byte, in *rulesql.Input) []byte {
	b = append(b, storedVersion)
	for _, s := range [...]string{in.Topic, in.ClientID, in.Principal, in.Thing} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendVarint(b, in.Timestamp)
	b = binary.AppendVarint(b, int64(in.Partition))
	b = binary.AppendVarint(b, in.Offset)
	return append(b, in.Raw...)
}

// decodeStored decodes a stored event, binary or JSON. Its Raw is never
// nil.
func decodeStored(b []byte) (storedInput, error) {
	var s storedInput
	if len(b) > 0 && b[0] == '{' {
		if err := json.Unmarshal(b, &s); err != nil {
			return storedInput{}, fmt.Errorf("decode stored event: %w", err)
		}
		if s.Raw == nil {
			s.Raw = []byte{}
		}
		return s, nil
	}
	r := reader{b: b}
	if r.byte() != storedVersion {
		return storedInput{}, fmt.Errorf("decode stored event: %w: unknown version", errCorrupt)
	}
	s.Topic, s.ClientID, s.Principal, s.Thing = string(r.bytes()), string(r.bytes()), string(r.bytes()), string(r.bytes())
	s.Timestamp = r.varint()
	p := r.varint()
	s.Partition = int32(p)
	s.Offset = r.varint()
	if r.bad || int64(s.Partition) != p {
		return storedInput{}, fmt.Errorf("decode stored event: %w (%d bytes)", errCorrupt, len(b))
	}
	s.Raw = append([]byte{}, r.b...)
	return s, nil
}

// decodeInput decodes a stored event; its get_thing_shadow() reads
// through tx at the event's time.
func (p *Processor) decodeInput(tx *processors.Tx, b []byte) (*rulesql.Input, error) {
	s, err := decodeStored(b)
	if err != nil {
		return nil, err
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

// reader reads the binary forms; bad is set (and zero values returned)
// once the input runs short.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		r.bad = true
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.bad = true
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes reads a uvarint length and that many bytes (not copied).
func (r *reader) bytes() []byte {
	l, n := binary.Uvarint(r.b)
	if n <= 0 || l > uint64(len(r.b)-n) {
		r.bad = true
		return nil
	}
	v := r.b[n : n+int(l)]
	r.b = r.b[n+int(l):]
	return v
}
