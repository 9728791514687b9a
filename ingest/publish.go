package ingest

import (
	"context"
	"fmt"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/twmb/franz-go/pkg/kgo"
)

// publishHook takes every device PUBLISH over: it writes the event to the
// log asynchronously and lets the connection's writer acknowledge and
// route it once the log acknowledged it.
type publishHook struct {
	mqtt.HookBase
	s *Server
}

func (h *publishHook) ID() string { return "iotpipe-publish" }

func (h *publishHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish, mqtt.OnPacketRead, mqtt.OnConnect, mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnWillSent,
		mqtt.OnSubscribed, mqtt.OnUnsubscribed:
		return true
	}
	return false
}

// OnPacketRead refuses, before anything else sees it, a PUBLISH whose
// topic is not a valid topic name or breaks a limit (checkTopic: 0x90)
// or whose payload is over the limit (0x95): an MQTT 5 client gets a
// DISCONNECT with that reason code, an MQTT 3.1.1 client has its
// connection closed (3.1.1 has no server DISCONNECT); and a PUBLISH on
// a reserved topic (refuseReserved: 0x87) or one its policies do not
// allow (iot:Publish, and iot:RetainPublish when retained: 0x87 the
// same way). Other clients are not affected.
func (h *publishHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish {
		return pk, nil
	}
	s := h.s
	topic := pk.TopicName
	if pk.Properties.TopicAliasFlag && topic == "" {
		// An MQTT 5 topic alias alone: the topic it stands for, as
		// mochi resolves it after the hooks (an alias is set even by a
		// publish refused here, so it is checked again at each use).
		topic = cl.State.TopicAliases.Inbound.Set(pk.Properties.TopicAlias, "")
	} else if err := checkTopic(topic); err != nil {
		return pk, s.refuse(cl, packets.Code{Code: packets.ErrTopicNameInvalid.Code, Reason: err.Error()}, "bad_topic", err.Error())
	}
	if len(pk.Payload) > s.opts.MaxPayload {
		reason := fmt.Sprintf("payload of %d bytes over the %d-byte limit", len(pk.Payload), s.opts.MaxPayload)
		return pk, s.refuse(cl, packets.Code{Code: packets.ErrPacketTooLarge.Code, Reason: reason}, "payload_too_large", reason)
	}
	if reason := reservedTopic(topic); reason != "" {
		return s.refuseReserved(cl, pk, topic, reason)
	}
	if d := s.auth.decider(cl); d != nil && !d.AllowPublish(topic, pk.FixedHeader.Retain) {
		action := "iot:Publish"
		if pk.FixedHeader.Retain {
			action = "iot:Publish and iot:RetainPublish"
		}
		return s.refuseNotAuthorized(cl, pk, topic, "publish_denied", "no policy allows "+action+" on topic/"+topic)
	}
	return pk, nil
}

// refuse disconnects cl with code (a DISCONNECT on MQTT 5 only) and
// returns packets.ErrRejectPacket, which makes mochi drop the packet and
// end the client's read loop.
func (s *Server) refuse(cl *mqtt.Client, code packets.Code, metric, reason string) error {
	s.metrics.refused.WithLabelValues(metric).Inc()
	s.opts.Logger.Warn("refused client", "client", cl.ID, "code", fmt.Sprintf("0x%02x", code.Code), "reason", reason)
	if cl.Properties.ProtocolVersion == 5 {
		_ = s.mqtt.DisconnectClient(cl, code)
	} else {
		cl.Stop(code)
	}
	return packets.ErrRejectPacket
}

// OnSubscribed and OnUnsubscribed move the subscription generation on,
// so connections look their topics' subscribers up again.
func (h *publishHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	h.s.subGen.Add(1)
}

func (h *publishHook) OnUnsubscribed(cl *mqtt.Client, pk packets.Packet) { h.s.subGen.Add(1) }

func (h *publishHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	c := newConn(h.s, cl)
	h.s.conns.Store(cl, c)
	h.s.lifecycle(cl, schemas.EventConnected, c, nil)
}

func (h *publishHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if cl.Net.Inline {
		return
	}
	v, ok := h.s.conns.LoadAndDelete(cl)
	if !ok {
		return // never established (refused at connect): no lifecycle event
	}
	c := v.(*conn)
	h.s.lifecycle(cl, schemas.EventDisconnected, c, err)
	c.close()
}

// OnWillSent logs a Last Will message mochi delivered for a client that
// went away.
func (h *publishHook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	h.s.opts.Logger.Info("last will delivered", "client", cl.ID, "topic", pk.TopicName)
	rec := h.s.record(cl, schemas.EventPublish, pk.TopicName, pk.FixedHeader.Qos, pk.FixedHeader.Retain, pk.Payload)
	h.s.producer.Produce(h.s.ctx, rec, func(r *kgo.Record, err error) {
		if err != nil {
			h.s.opts.Logger.Error("log last will", "client", cl.ID, "err", err)
		}
	})
}

func (h *publishHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return routed(pk), nil // our own routing of logged messages
	}
	if pk.Ignore {
		return pk, packets.ErrRejectPacket // refused in OnPacketRead, answered in turn
	}
	s := h.s
	v, ok := s.conns.Load(cl)
	if !ok || pk.FixedHeader.Qos == 2 {
		// QoS 2 is rare here (AWS IoT has none), and a client not yet
		// established should not publish: log synchronously and let
		// mochi run the rest (PUBREC/PUBREL exchange, routing).
		rec := s.record(cl, schemas.EventPublish, pk.TopicName, pk.FixedHeader.Qos, pk.FixedHeader.Retain, pk.Payload)
		if err := s.producer.ProduceSync(s.ctx, rec).FirstErr(); err != nil {
			return pk, packets.ErrUnspecifiedError
		}
		s.metrics.logged.Inc()
		return pk, nil
	}
	c := v.(*conn)
	if pk.FixedHeader.Qos == 0 && !c.mayHaveSubscribers(&c.readerSubs, &pk) {
		c.produceUnrouted(pk) // nothing to acknowledge, nobody to route to
	} else {
		c.produce(schemas.EventPublish, pk, pk.FixedHeader.Qos == 1)
	}
	return pk, packets.ErrRejectPacket
}

// produceUnrouted writes a QoS 0 publish nobody subscribes to straight to
// the log, bypassing the writer's FIFO (there is no PUBACK to order and
// nothing to route); it still takes an in-flight slot, so back-pressure
// holds.
func (c *conn) produceUnrouted(pk packets.Packet) {
	if !c.acquire(true) {
		return
	}
	p := c.pending(schemas.EventPublish, pk, false)
	c.s.producer.Produce(c.s.ctx, &p.rec, c.s.promiseUnrouted)
}

// producedUnrouted is the promise of produceUnrouted's records.
func (s *Server) producedUnrouted(r *kgo.Record, err error) {
	p := r.Context.(*pending)
	if err != nil {
		s.metrics.produceErrors.Inc()
	} else {
		s.metrics.logged.Inc()
		s.metrics.produceLatency.Observe(time.Since(p.start).Seconds())
	}
	<-p.c.sem
}

// produce writes the event of pk to the log asynchronously; once the log
// answered, the writer acknowledges pk (when ack) and routes it, in FIFO
// order. It waits for an in-flight slot first (acquire; a client's own
// publish is dropped, unacknowledged, if its connection closes
// meanwhile).
func (c *conn) produce(typ schemas.EventType, pk packets.Packet, ack bool) {
	if !c.acquire(typ == schemas.EventPublish) {
		c.s.opts.Logger.Debug("event not logged: connection or server closed while the log was full", "client", c.cl.ID, "type", typ)
		return
	}
	p := c.pending(typ, pk, ack)
	c.push(p)
	c.s.producer.Produce(c.s.ctx, &p.rec, c.s.promise)
}

// pending returns pk's pending with its log record filled in; the
// caller holds an in-flight slot for it.
func (c *conn) pending(typ schemas.EventType, pk packets.Packet, ack bool) *pending {
	now := time.Now()
	p := &pending{Context: context.Background(), pk: pk, ack: ack, start: now, c: c}
	key := c.key // the common case (schemas.EventKey is the thing or client id): share its bytes
	if thing := schemas.TopicThing(pk.TopicName); thing != "" {
		key = []byte(thing)
	}
	c.s.fillRecord(&p.rec, p.hdrs[:0], key, c.cl.ID, c.principal, c.thing, typ, pk.TopicName, pk.FixedHeader.Qos, pk.FixedHeader.Retain, pk.Payload, now)
	p.rec.Context = p
	return p
}

// produced is the one produce promise of every connection's records. It
// never blocks: it marks the pending and wakes its connection's writer,
// or, when the writer already answered it at AckTimeout, frees its
// in-flight slot.
func (s *Server) produced(r *kgo.Record, err error) {
	p := r.Context.(*pending)
	state := logged
	if err != nil {
		state = failed
		s.metrics.produceErrors.Inc()
		s.opts.Logger.Debug("log write failed", "client", p.c.cl.ID, "topic", p.pk.TopicName, "err", err)
	} else {
		s.metrics.logged.Inc()
		s.metrics.produceLatency.Observe(time.Since(p.start).Seconds())
	}
	if !p.state.CompareAndSwap(inFlight, state) {
		<-p.c.sem // timed out: answered, not routed
		return
	}
	p.c.signal()
}

// record builds the log record of an event of cl.
func (s *Server) record(cl *mqtt.Client, typ schemas.EventType, topic string, qos byte, retain bool, payload []byte) *kgo.Record {
	r := new(kgo.Record)
	who, thing := s.auth.who(cl)
	s.fillRecord(r, make([]kgo.RecordHeader, 0, 9), []byte(schemas.EventKey(cl.ID, thing, topic)), cl.ID, who, thing, typ, topic, qos, retain, payload, time.Now())
	return r
}

// fillRecord sets r to the events-topic record of an event keyed by key,
// appending its headers to hdrs.
func (s *Server) fillRecord(r *kgo.Record, hdrs []kgo.RecordHeader, key []byte, clientID, principal, thing string, typ schemas.EventType, topic string, qos byte, retain bool, payload []byte, at time.Time) {
	env := schemas.Envelope{
		Type:       typ,
		Topic:      topic,
		ClientID:   clientID,
		Principal:  principal,
		Thing:      thing,
		QoS:        qos,
		Retain:     retain,
		ReceivedAt: at.UnixNano(),
	}
	r.Topic = s.opts.Topics.Events
	r.Key = key
	r.Value = payload
	r.Headers = env.AppendHeaders(hdrs)
}

// principal is the principal of a connection in Dev mode: its user
// name, or anonymous.
func principal(cl *mqtt.Client) string {
	if u := cl.Properties.Username; len(u) > 0 {
		return string(u)
	}
	return "anonymous"
}
