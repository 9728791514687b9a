package ingest

import (
	"context"
	"sync"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Consumer is what outbound delivery needs of a Kafka client: a
// *kgo.Client consuming the outbound topic in a group, with
// kgo.DisableAutoCommit.
type Consumer interface {
	PollFetches(ctx context.Context) kgo.Fetches
	CommitUncommittedOffsets(ctx context.Context) error
}

// DeliverOutbound consumes the outbound topic until ctx ends, routing
// each message to subscribed MQTT clients and answering any caller
// waiting on its request id. Create the client with
// kgo.ConsumeTopics(topics.Outbound), a consumer group per ingest node
// (OutboundGroup), so every node sees every message for its clients,
// and kgo.DisableAutoCommit: the offsets are committed once a poll's
// messages are routed, so a crash routes again only the poll it
// interrupted (autocommitted every 5s, a kill -9 delivered up to 5s of
// commands and shadow answers to devices a second time).
func (s *Server) DeliverOutbound(ctx context.Context, cl Consumer) error {
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(topic string, p int32, err error) {
			s.opts.Logger.Warn("outbound fetch", "topic", topic, "partition", p, "err", err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			o := schemas.DecodeOutbound(r)
			if o.RequestID != "" {
				s.waiters.answer(o)
			}
			if o.Topic == "" {
				return
			}
			// Before routing: a QoS 0 message routed to an offline
			// session is gone, the outcome is what the sessions were.
			s.reportDelivery(r, &o)
			s.route(packets.Packet{
				FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: o.QoS, Retain: o.Retain},
				TopicName:   o.Topic, Payload: o.Payload,
			}, "")
			s.metrics.delivered.Inc()
		})
		if !fs.Empty() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if err := cl.CommitUncommittedOffsets(cctx); err != nil {
				s.opts.Logger.Warn("outbound: commit of the routed messages' offsets failed; a restart routes them again", "err", err)
			}
			cancel()
		}
	}
}

// OutboundGroup returns the consumer group name of this node's outbound
// delivery.
func (s *Server) OutboundGroup() string { return "iotpipe-outbound-" + s.opts.Node }

// waiters maps request ids to callers waiting for the answer.
type waiters struct {
	mu sync.Mutex
	m  map[string]chan schemas.Outbound
}

// Wait registers a waiter for request id and returns the channel its
// answers arrive on and a function to unregister.
func (s *Server) Wait(id string) (<-chan schemas.Outbound, func()) {
	ch := make(chan schemas.Outbound, 4)
	s.waiters.mu.Lock()
	s.waiters.m[id] = ch
	s.waiters.mu.Unlock()
	return ch, func() {
		s.waiters.mu.Lock()
		delete(s.waiters.m, id)
		s.waiters.mu.Unlock()
	}
}

func (w *waiters) answer(o schemas.Outbound) {
	w.mu.Lock()
	ch, ok := w.m[o.RequestID]
	w.mu.Unlock()
	if !ok {
		return
	}
	select {
	case ch <- o:
	default:
	}
}
