package ingest

import (
	"context"
	"net"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/twmb/franz-go/pkg/kgo"
)

// crashDisconnectReason is the disconnectReason of the disconnected
// events written at start for the connections a node that did not stop
// cleanly (kill -9, power loss, out of memory) still held: the node ended
// them, not the clients.
const crashDisconnectReason = "SERVER_INITIATED_DISCONNECT"

// disconnectCrashed writes, before the listener opens, a disconnected
// event (log record, then presence message) for every connection the
// session store still holds live: a clean stop disconnects every client
// and writes their events, so these are what a crash left behind. Each
// carries the session identifier of its connected event and the time of
// this start. They are forgotten once the log took them; if the log does
// not answer, they stay for the next start (a client that reconnects
// meanwhile replaces its own).
func (s *Server) disconnectCrashed() {
	if s.store == nil {
		return
	}
	left := s.store.live()
	if len(left) == 0 {
		return
	}
	now := time.Now()
	recs := make([]*kgo.Record, len(left))
	pks := make([]packets.Packet, len(left))
	for i, ls := range left {
		f := false
		ev := presenceEvent{
			ClientID: ls.ClientID, Timestamp: now.UnixMilli(), EventType: string(schemas.EventDisconnected),
			SessionIdentifier: ls.Session, PrincipalIdentifier: ls.Principal, ClientInitiatedDisconnect: &f,
			DisconnectReason: crashDisconnectReason, IPAddress: ls.IP,
		}
		payload, _ := ev.marshal()
		topic := "$aws/events/presence/disconnected/" + ls.ClientID
		recs[i] = new(kgo.Record)
		s.fillRecord(recs[i], make([]kgo.RecordHeader, 0, 9), []byte(schemas.EventKey(ls.ClientID, ls.Thing, "")), ls.ClientID, ls.Principal, ls.Thing,
			schemas.EventDisconnected, topic, 1, false, payload, now)
		pks[i] = packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: topic, Payload: payload, PacketID: 1}
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.AckTimeout)
	defer cancel()
	if err := s.producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		s.opts.Logger.Warn("a previous run did not stop cleanly and left clients connected; their disconnected events could not be written now and will be at the next start",
			"clients", len(left), "err", err)
		return
	}
	ids := make([]string, len(left))
	for i, ls := range left {
		ids[i] = ls.ClientID
	}
	s.store.deleteLive(true, ids...)
	for i := range left {
		s.route(pks[i], "")
		s.metrics.lifecycle.WithLabelValues(string(schemas.EventDisconnected)).Inc()
	}
	s.opts.Logger.Warn("a previous run did not stop cleanly: wrote disconnected events for the clients it held connected",
		"clients", len(left), "reason", crashDisconnectReason)
}

// liveRecord is what the store keeps of an established connection.
func liveRecord(c *conn) liveSession {
	ls := liveSession{ClientID: c.cl.ID, Session: c.session, Principal: c.principal, Thing: c.thing, Since: time.Now().UnixMilli()}
	if host, _, err := net.SplitHostPort(c.cl.Net.Remote); err == nil {
		ls.IP = host
	}
	return ls
}
