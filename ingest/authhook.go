package ingest

import (
	"strings"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// authHook is the identity's side of mochi's hooks: it authenticates a
// CONNECT, decides subscriptions and filters delivery (iot:Subscribe,
// iot:Receive). Publishes are decided in the publish hook's
// OnPacketRead, so a denied one is answered in its turn among the
// client's PUBACKs.
type authHook struct {
	mqtt.HookBase
	a *auth
}

func (h *authHook) ID() string { return "iotpipe-auth" }

func (h *authHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnConnect authenticates the client (auth.authenticate). It runs here
// rather than in OnConnectAuthenticate so a refusal gets its own CONNACK
// code (mochi's refusal is always Bad User Name or Password), and after
// the publish hook's checks of the client id and the Will.
func (h *authHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	w, _ := cl.Net.Conn.(*topicWatch)
	id, ref := h.a.authenticate(cl, pk, w)
	if ref != nil {
		return h.a.refused(cl, ref)
	}
	if w != nil {
		w.ident.Store(id)
	}
	h.a.s.metrics.authenticated.WithLabelValues(id.method).Inc()
	return nil
}

// OnConnectAuthenticate lets through what OnConnect authenticated (the
// inline client too).
func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	return cl.Net.Inline || h.a.s.opts.Dev || identityOf(cl) != nil
}

// subDecision is the iot:Subscribe decision on one filter of a
// SUBSCRIBE, found by the filter string's own bytes (see OnSubscribe).
type subDecision struct {
	filter  *byte
	allowed bool
}

// OnSubscribe decides iot:Subscribe on each filter of pk (topicfilter/
// <filter>). mochi asks OnACLCheck(filter, false) next for each, the
// same question it asks for every delivery (OnACLCheck(topic, false)),
// which would mix a subscription up with a delivery on a topic equal to
// the filter. Each filter is copied to bytes of its own and its decision
// kept by their address: OnACLCheck given exactly that string answers
// the subscription, any other string (a delivery's topic) is a receive.
func (h *authHook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	id := identityOf(cl)
	if id == nil {
		return pk
	}
	d := id.decider.Load()
	if d == nil {
		return pk
	}
	ds := make([]subDecision, 0, len(pk.Filters))
	for i := range pk.Filters {
		f := strings.Clone(pk.Filters[i].Filter)
		if f == "" {
			continue // refused as invalid before any question
		}
		pk.Filters[i].Filter = f
		allowed := d.AllowSubscribe(f)
		if !allowed {
			h.a.s.metrics.refused.WithLabelValues("subscribe_denied").Inc()
			h.a.s.opts.Logger.Debug("subscription refused", "client", cl.ID, "filter", f, "principal", id.principal)
		}
		ds = append(ds, subDecision{unsafe.StringData(f), allowed})
	}
	id.subs.Store(&ds)
	return pk
}

// OnSubscribed forgets the SUBSCRIBE's decisions.
func (h *authHook) OnSubscribed(cl *mqtt.Client, pk packets.Packet, codes []byte) {
	if id := identityOf(cl); id != nil {
		id.subs.Store(nil)
	}
}

// OnACLCheck answers mochi: publishes (write) were decided already in
// OnPacketRead; a filter of the SUBSCRIBE being processed gets
// OnSubscribe's decision; anything else is a delivery to cl, decided by
// iot:Receive on topic/<topic>. A session restored from the store whose
// client has not connected again has no identity: what it is sent is
// queued (its subscriptions were decided when made).
func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if write || cl.Net.Inline {
		return true
	}
	id := identityOf(cl)
	if id == nil {
		return h.a.s.opts.Dev || cl.Net.Conn == nil
	}
	if ds := id.subs.Load(); ds != nil && len(topic) > 0 {
		p := unsafe.StringData(topic)
		for _, sd := range *ds {
			if sd.filter == p {
				return sd.allowed
			}
		}
	}
	d := id.decider.Load()
	if d == nil || d.AllowReceive(topic) {
		return true
	}
	h.a.s.metrics.refused.WithLabelValues("receive_denied").Inc()
	return false
}

// OnDisconnect releases what the connection's identity holds (the
// custom authorizer's timers).
func (h *authHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if id := identityOf(cl); id != nil && id.session != nil {
		id.session.stop()
	}
}

// establishedHook runs last when a session is established: the registry
// change that revokes its credentials may have been applied between the
// CONNECT's lookups and now, after the revocation looked for sessions.
type establishedHook struct {
	mqtt.HookBase
	a *auth
}

func (h *establishedHook) ID() string { return "iotpipe-auth-established" }

func (h *establishedHook) Provides(b byte) bool { return b == mqtt.OnSessionEstablished }

func (h *establishedHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.a.established(cl)
}
