// Package replies is the processor that finds the command replies among
// the events: a device's publish to cmd/{thing}/{id}/reply
// (schemas.ParseReply) is copied, key, payload and envelope headers as
// they are, to the replies topic (iotpipe.replies), in the transaction
// of the event's batch like every derived record. The command status
// (sinks/republish) follows that small topic instead of reading every
// event.
package replies

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas"
)

// Name is the processor's name.
const Name = "replies"

// Processor copies command replies to Topic. It keeps no state.
type Processor struct {
	// Topic is the replies topic (schemas.Topics.Replies).
	Topic string
}

// Name implements processors.Processor.
func (Processor) Name() string { return Name }

// Process implements processors.Processor: a publish to a reply topic
// is emitted to p.Topic (with replay's effects off too: it is a derived
// record, not an effect); other events emit nothing.
func (p Processor) Process(_ context.Context, tx *processors.Tx, ev *processors.Event) error {
	if ev.Envelope.Type != schemas.EventPublish {
		return nil
	}
	if _, _, ok := schemas.ParseReply(ev.Envelope.Topic); !ok {
		return nil
	}
	// The runtime reuses the event's record; the copy is the record's
	// own (with room for the header tx.Emit adds).
	tx.Emit(&kgo.Record{
		Topic:   p.Topic,
		Key:     []byte(ev.Thing),
		Value:   slices.Clone(ev.Payload),
		Headers: append(make([]kgo.RecordHeader, 0, len(ev.Headers)+1), ev.Headers...),
	})
	return nil
}
