package ingest

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"
	"github.com/prometheus/client_golang/prometheus"
)

// maxSessionExpiryLimit is the longest MaxSessionExpiry (AWS IoT's upper
// bound).
const maxSessionExpiryLimit = 7 * 24 * time.Hour

// sessionExpiry is how long a persistent session of an MQTT version v
// client asking for interval seconds outlives its connection: MQTT 5 gets
// what it asks for up to MaxSessionExpiry, MQTT 3.1.1 gets
// MaxSessionExpiry.
func (s *Server) sessionExpiry(v byte, interval uint32) time.Duration {
	max := s.opts.MaxSessionExpiry
	if d := time.Duration(interval) * time.Second; v == 5 && d < max {
		return d
	}
	return max
}

func (s *Server) storedExpiry(c storage.Client) time.Duration {
	return s.sessionExpiry(c.ProtocolVersion, c.Properties.SessionExpiryInterval)
}

// expiry removes persistent sessions once offline past their expiry,
// from memory (client, subscriptions, queued messages) and from the
// session store. mochi's own sweep keeps an offline session's
// subscriptions in its topic index, counts expiry from the last start
// for sessions loaded from the store, and lets an MQTT 5 client raise
// its interval past the maximum at DISCONNECT; so each offline session
// has a timer here, set from when it went offline, and mochi's sweep,
// which still runs, finds them gone.
type expiry struct {
	s       *Server
	mu      sync.Mutex
	timers  map[string]*offlineSession
	stopped bool
	expired prometheus.Counter
	// eventLoop are what mochi's event loop holds between expiring a
	// session (OnClientExpired) and its next tick (see OnClientExpired).
	eventLoop struct {
		held  []any
		readd []*mqtt.Client
	}
}

type offlineSession struct {
	cl    *mqtt.Client
	timer *time.Timer
}

func newExpiry(s *Server) *expiry {
	return &expiry{s: s, timers: map[string]*offlineSession{}, expired: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "iotpipe_ingest_sessions_expired_total",
		Help: "Persistent MQTT sessions removed after staying offline past their session expiry.",
	})}
}

// schedule expires cl's session (client id id) at the given time unless
// it reconnects first.
func (e *expiry) schedule(id string, cl *mqtt.Client, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return
	}
	if o := e.timers[id]; o != nil {
		o.timer.Stop()
	}
	o := &offlineSession{cl: cl}
	o.timer = time.AfterFunc(time.Until(at), func() { e.fire(id, o) })
	e.timers[id] = o
}

// cancel forgets id's expiry: it connected again.
func (e *expiry) cancel(id string) {
	e.mu.Lock()
	if o := e.timers[id]; o != nil {
		o.timer.Stop()
		delete(e.timers, id)
	}
	e.mu.Unlock()
}

// pending reports whether cl's session waits for its expiry.
func (e *expiry) pending(cl *mqtt.Client) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	o := e.timers[cl.ID]
	return o != nil && o.cl == cl
}

// stop stops every timer (the server closes).
func (e *expiry) stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopped = true
	for id, o := range e.timers {
		o.timer.Stop()
		delete(e.timers, id)
	}
}

// fire expires o's session, under the client id's lock, if it is still
// the id's session and still offline.
func (e *expiry) fire(id string, o *offlineSession) {
	e.mu.Lock()
	current := e.timers[id] == o
	if current {
		delete(e.timers, id)
	}
	e.mu.Unlock()
	t := e.s.takeover
	if !current || !t.lock(o, id) {
		return
	}
	defer t.unlock(o)
	if cur, ok := e.s.mqtt.Clients.Get(id); !ok || cur != o.cl || !cur.Closed() {
		return
	}
	e.remove(o.cl)
	e.s.mqtt.Clients.Delete(id)
}

// remove drops cl's subscriptions and queued messages and its stored
// session; the caller removes it from mochi's client map.
func (e *expiry) remove(cl *mqtt.Client) {
	e.s.mqtt.UnsubscribeClient(cl)
	cl.ClearInflights()
	if st := e.s.store; st != nil {
		st.deleteClient(cl.ID)
	}
	e.expired.Inc()
	e.s.opts.Logger.Debug("mqtt session expired", "client", cl.ID)
}

// expiryHook is the expiry's side of mochi's hooks.
type expiryHook struct {
	mqtt.HookBase
	e *expiry
}

func (h *expiryHook) ID() string { return "iotpipe-session-expiry" }

func (h *expiryHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnClientExpired, mqtt.OnSysInfoTick:
		return true
	}
	return false
}

func (h *expiryHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if !cl.Net.Inline {
		h.e.cancel(cl.ID)
	}
}

// OnDisconnect starts a persistent session's expiry (a session taken
// over lives on in its successor's connection).
func (h *expiryHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if cl.Net.Inline || cl.Net.Conn == nil || expire || isTakeover(cl) {
		return
	}
	d := h.e.s.sessionExpiry(cl.Properties.ProtocolVersion, cl.Properties.Props.SessionExpiryInterval)
	h.e.schedule(cl.ID, cl, time.Now().Add(d))
}

// OnClientExpired runs in mochi's sweep, which deletes the client id from
// its map right after, from a snapshot of the map: by then the id may
// belong to a newer connection. The sweep holds the id's lock until its
// next tick (OnSysInfoTick), so no connection takes the id over before
// that delete; a newer connection the delete removes is put back then.
func (h *expiryHook) OnClientExpired(cl *mqtt.Client) {
	e := h.e
	key := new(byte)
	if !e.s.takeover.lock(key, cl.ID) {
		return
	}
	cur, ok := e.s.mqtt.Clients.Get(cl.ID)
	e.mu.Lock()
	e.eventLoop.held = append(e.eventLoop.held, key)
	if ok && cur != cl {
		e.eventLoop.readd = append(e.eventLoop.readd, cur)
	}
	e.mu.Unlock()
	switch {
	case !ok, cur != cl:
	default:
		e.cancel(cl.ID)
		e.remove(cl)
	}
}

// OnSysInfoTick, in mochi's event loop after its sweep, puts back the
// connections the sweep removed by mistake and releases its locks.
func (h *expiryHook) OnSysInfoTick(*system.Info) {
	e := h.e
	e.mu.Lock()
	readd, held := e.eventLoop.readd, e.eventLoop.held
	e.eventLoop.readd, e.eventLoop.held = nil, nil
	e.mu.Unlock()
	for _, cl := range readd {
		if _, ok := e.s.mqtt.Clients.Get(cl.ID); !ok && (!cl.Closed() || e.pending(cl)) {
			e.s.mqtt.Clients.Add(cl)
		}
	}
	for _, k := range held {
		e.s.takeover.unlock(k)
	}
}

// scheduleLoaded starts the expiry of the sessions loaded from the store
// at start, from when each went offline.
func (e *expiry) scheduleLoaded() {
	st := e.s.store
	if st == nil {
		return
	}
	for id, until := range st.loaded {
		if cl, ok := e.s.mqtt.Clients.Get(id); ok {
			e.schedule(id, cl, until)
		}
	}
	st.loaded = nil
}

// checkSessionExpiry validates Options.MaxSessionExpiry.
func checkSessionExpiry(d time.Duration) error {
	if d < time.Second || d > maxSessionExpiryLimit {
		return fmt.Errorf("mqtt session expiry %v (--mqtt-session-expiry): must be between 1s and 168h (7 days, AWS IoT's most; its default is 1h)", d)
	}
	return nil
}

// connCollectors are the metrics of connections and sessions (beside
// the refusals in iotpipe_ingest_refused_total).
func (s *Server) connCollectors() []prometheus.Collector {
	cs := append(s.drops.collectors(), s.expiry.expired)
	if s.store != nil {
		cs = append(cs, s.store.w.dropped)
	}
	return append(cs, s.sessionGauges()...)
}

// sessionGauges count the connected and the offline persistent sessions
// (iotpipe_ingest_sessions{state}).
func (s *Server) sessionGauges() []prometheus.Collector {
	gauge := func(state string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "iotpipe_ingest_sessions",
			Help:        "MQTT sessions held, by state (connected; offline: persistent sessions kept for a client that is away).",
			ConstLabels: prometheus.Labels{"state": state},
		}, f)
	}
	connected := func() float64 { return float64(atomic.LoadInt64(&s.mqtt.Info.ClientsConnected)) }
	return []prometheus.Collector{
		gauge("connected", connected),
		gauge("offline", func() float64 {
			// mochi's map also holds its inline client.
			return max(float64(s.mqtt.Clients.Len()-1)-connected(), 0)
		}),
	}
}
