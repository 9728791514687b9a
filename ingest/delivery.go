package ingest

import (
	"context"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// deliveryOutcome says what routing a QoS qos message on topic does on
// this node: reaches a connected subscriber (Delivered), only offline
// persistent sessions that keep it (Queued), or nobody (NoSubscriber).
func (s *Server) deliveryOutcome(topic string, qos byte) string {
	subs := s.mqtt.Topics.Subscribers(topic)
	outcome := schemas.NoSubscriber
	check := func(client string, subQoS byte) bool {
		if client == "" || client == s.router.ID {
			return false
		}
		cl, ok := s.mqtt.Clients.Get(client)
		if !ok {
			return false
		}
		if !cl.Closed() {
			outcome = schemas.Delivered
			return true
		}
		// An offline session keeps what it would get at QoS 1 or 2.
		if min(qos, subQoS) > 0 {
			outcome = schemas.Queued
		}
		return false
	}
	for client, sub := range subs.Subscriptions {
		if check(client, sub.Qos) {
			return outcome
		}
	}
	for _, group := range subs.Shared {
		for client, sub := range group {
			if check(client, sub.Qos) {
				return outcome
			}
		}
	}
	return outcome
}

// reportDelivery writes, for a command record of the outbound topic,
// what this node did with it to the deliveries topic (the command
// status reads it). The report is best effort: a failure is logged and
// counted, it never holds delivery up.
func (s *Server) reportDelivery(r *kgo.Record, o *schemas.Outbound) {
	id := string(schemas.HeaderValue(r.Headers, schemas.HeaderCommand))
	if id == "" || s.opts.Topics.Deliveries == "" {
		return
	}
	d := schemas.Delivery{Command: id, Topic: o.Topic, Node: s.opts.Node,
		Outcome: s.deliveryOutcome(o.Topic, o.QoS), At: time.Now().UnixMilli()}
	s.metrics.commands.WithLabelValues(d.Outcome).Inc()
	s.producer.Produce(context.WithoutCancel(s.ctx), d.Record(s.opts.Topics.Deliveries), func(_ *kgo.Record, err error) {
		if err != nil {
			s.opts.Logger.Warn("command delivery report not written", "command", id, "outcome", d.Outcome, "err", err)
		}
	})
}
