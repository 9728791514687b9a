package ingest

import (
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// route hands a logged publish to mochi's routing (subscribers and
// retained messages) through the router's inline client, as mochi would
// have routed pk when it arrived from origin (the publishing client's
// id; "" for iotpipe's own messages): no-local subscriptions and the
// retained store see origin, and a Message Expiry Interval counts from
// pk's arrival (pk.Created), so a message that expired while the log
// had it is not routed, and what is routed carries the remaining
// interval. The other MQTT 5 properties go with pk as they are.
func (s *Server) route(pk packets.Packet, origin string) {
	pk.FixedHeader.Dup = false
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false // the publisher's, resolved already
	pk.PacketID = 0
	if pk.FixedHeader.Qos > 0 {
		pk.PacketID = 1 // mochi wants one at QoS > 0 (and none at QoS 0); the router never uses it
	}
	if e := int64(pk.Properties.MessageExpiryInterval); e > 0 && pk.Created > 0 {
		if m := s.mqtt.Options.Capabilities.MaximumMessageExpiryInterval; m > 0 {
			e = min(e, m)
		}
		remaining := pk.Created + e - time.Now().Unix()
		if remaining < 0 { // mochi: expired once Expiry < now
			s.metrics.expired.Inc()
			return
		}
		pk.Properties.MessageExpiryInterval = uint32(max(remaining, 1))
	}
	// mochi sets Origin to the router's id; OnPublish (routed) puts
	// this back.
	pk.Connect.ClientIdentifier = origin
	if err := s.mqtt.InjectPacket(s.router, pk); err != nil {
		s.opts.Logger.Debug("route", "topic", pk.TopicName, "err", err)
	}
}

// routed is the router's packet in OnPublish: its Origin is the client
// route was given, not the router.
func routed(pk packets.Packet) packets.Packet {
	if id := pk.Connect.ClientIdentifier; id != "" {
		pk.Origin, pk.Connect.ClientIdentifier = id, ""
	}
	return pk
}

// restoreStored puts back, in the messages mochi loaded from the session
// store (retained messages, queued QoS 1 messages of offline sessions),
// what its storage hook keeps but does not restore (mochi-mqtt v2.7.9):
// that a message with a Message Expiry Interval expires (its expiry
// from Created and the interval; mochi expires only MQTT 5 messages),
// and the Payload Format Indicator (the stored byte; 0, unspecified
// bytes, is the same as no indicator). A message that expired while
// iotpipe was down is removed, from the store too, before any client
// can be sent it.
func (s *Server) restoreStored() {
	if s.store == nil {
		return
	}
	now := time.Now().Unix()
	maxExpiry := s.mqtt.Options.Capabilities.MaximumMessageExpiryInterval
	// fix returns pk restored, whether it changed, and whether it expired.
	fix := func(pk packets.Packet) (packets.Packet, bool, bool) {
		changed := false
		if e := int64(pk.Properties.MessageExpiryInterval); e > 0 && pk.Expiry == 0 {
			if maxExpiry > 0 {
				e = min(e, maxExpiry)
			}
			pk.ProtocolVersion, pk.Expiry, changed = 5, pk.Created+e, true
		}
		if pk.Properties.PayloadFormat != 0 && !pk.Properties.PayloadFormatFlag {
			pk.Properties.PayloadFormatFlag, changed = true, true
		}
		return pk, changed, pk.Expiry > 0 && pk.Expiry < now
	}
	for topic, pk := range s.mqtt.Topics.Retained.GetAll() {
		switch pk, changed, expired := fix(pk); {
		case expired:
			s.mqtt.Topics.RetainMessage(packets.Packet{TopicName: topic}) // no payload: removes it
			s.store.OnRetainedExpired(topic)
		case changed:
			s.mqtt.Topics.Retained.Add(topic, pk)
		}
	}
	for _, cl := range s.mqtt.Clients.GetAll() {
		for _, pk := range cl.State.Inflight.GetAll(false) {
			switch pk, changed, expired := fix(pk); {
			case expired:
				cl.State.Inflight.Delete(pk.PacketID)
				s.store.OnQosDropped(cl, pk)
			case changed:
				cl.State.Inflight.Set(pk)
			}
		}
	}
}
