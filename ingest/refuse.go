package ingest

import (
	"fmt"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// OnConnect refuses a client id over MaxClientIDBytes or with a wildcard
// (0x85; 0x02 on MQTT 3.1.1) and a Will on a topic a PUBLISH could not
// use: invalid or over the limits (0x90), or reserved (0x87; 0x05 on
// MQTT 3.1.1 for both), so a Will can never forge what only iotpipe
// publishes.
func (h *publishHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if w, ok := cl.Net.Conn.(*topicWatch); ok && cl.Properties.ProtocolVersion == 5 {
		w.v5.Store(true)
	}
	if err := checkClientID(cl.ID); err != nil {
		return h.s.refuseConnect(cl, packets.ErrClientIdentifierNotValid, "bad_client_id", err.Error())
	}
	if !pk.Connect.WillFlag {
		return nil
	}
	if err := checkTopic(pk.Connect.WillTopic); err != nil {
		return h.s.refuseConnect(cl, packets.ErrTopicNameInvalid, "bad_topic", "will "+err.Error())
	}
	if reason := reservedTopic(pk.Connect.WillTopic); reason != "" {
		return h.s.refuseConnect(cl, packets.ErrNotAuthorized, "reserved_topic", "will topic: "+reason)
	}
	return nil
}

// refuseConnect answers cl's CONNECT with a CONNACK refusing it with
// code (MQTT 3.1.1: 0x02 for a client id, 0x05 otherwise) and returns
// the error that makes mochi close the connection.
func (s *Server) refuseConnect(cl *mqtt.Client, code packets.Code, metric, reason string) error {
	s.metrics.refused.WithLabelValues(metric).Inc()
	s.opts.Logger.Warn("refused connection", "client", cl.ID, "remote", cl.Net.Remote, "code", fmt.Sprintf("0x%02x", code.Code), "reason", reason)
	switch {
	case cl.Properties.ProtocolVersion == 5:
		s.connack(cl, code.Code, reason)
	case code == packets.ErrClientIdentifierNotValid:
		s.connack(cl, packets.Err3ClientIdentifierNotValid.Code, "")
	default:
		s.connack(cl, packets.Err3NotAuthorized.Code, "")
	}
	return packets.Code{Code: code.Code, Reason: reason}
}

// connack answers cl's CONNECT with a refusing CONNACK: code as it is
// for cl's protocol version, and reason as the MQTT 5 reason string.
func (s *Server) connack(cl *mqtt.Client, code byte, reason string) {
	ack := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ReasonCode: code}
	if cl.Properties.ProtocolVersion == 5 {
		ack.Properties.ReasonString = reason
	}
	if err := cl.WritePacket(ack); err != nil {
		s.opts.Logger.Debug("write connack", "client", cl.ID, "err", err)
	}
}

// refuseReserved refuses pk, a PUBLISH on a topic only iotpipe
// publishes on (reason says why): MQTT 5 QoS 1 gets a PUBACK with 0x87
// Not authorized in its turn among the client's PUBACKs and the
// connection stays (pk is marked Ignore, so neither mochi nor OnPublish
// logs or routes it); MQTT 5 at QoS 0 or 2 gets a DISCONNECT with 0x87,
// MQTT 3.1.1 has its connection closed, as AWS IoT does.
func (s *Server) refuseReserved(cl *mqtt.Client, pk packets.Packet, topic, reason string) (packets.Packet, error) {
	return s.refuseNotAuthorized(cl, pk, topic, "reserved_topic", reason)
}

// refuseNotAuthorized refuses pk, a PUBLISH on topic (its alias
// resolved) the client may not publish on, counted as metric: as
// refuseReserved says.
func (s *Server) refuseNotAuthorized(cl *mqtt.Client, pk packets.Packet, topic, metric, reason string) (packets.Packet, error) {
	code := packets.Code{Code: packets.ErrNotAuthorized.Code, Reason: reason}
	v, ok := s.conns.Load(cl)
	if cl.Properties.ProtocolVersion != 5 || pk.FixedHeader.Qos != 1 || !ok {
		return pk, s.refuse(cl, code, metric, fmt.Sprintf("publish on %s: %s", topic, reason))
	}
	// Counted; logged at debug level only, as the connection goes on
	// and may repeat it at any rate.
	s.metrics.refused.WithLabelValues(metric).Inc()
	s.opts.Logger.Debug("refused publish", "client", cl.ID, "topic", topic, "code", fmt.Sprintf("0x%02x", code.Code), "reason", reason)
	v.(*conn).refusePublish(pk, code.Code)
	pk.Ignore = true
	return pk, nil
}

// refusePublish queues a PUBACK with reason code for pk in its turn in
// the FIFO, behind the client's earlier publishes.
func (c *conn) refusePublish(pk packets.Packet, code byte) {
	if !c.acquire(true) {
		return
	}
	p := &pending{pk: pk, ack: true, code: code, start: time.Now(), c: c}
	p.state.Store(refused)
	c.push(p)
	c.signal()
}
