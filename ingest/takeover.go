package ingest

import (
	"errors"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// takeover gives each client id one connection at a time. mochi looks a
// CONNECT's client id up in its client map, disconnects the holder and
// adds the newcomer without a lock, and a leaving connection deletes the
// id from that map and unsubscribes the id's filters after its
// OnDisconnect hooks, again without a lock. Two CONNECTs with one id
// could so both stay connected, and a leaving connection could take its
// successor's map entry and subscriptions with it.
//
// takeover holds a lock per client id over both stretches: from
// OnSessionEstablish to OnSessionEstablished for a connection arriving,
// from OnDisconnect to the end of mochi's handling of the connection
// (the listener calls connEnded) for one leaving. An arriving connection
// first disconnects the id's live connection itself and waits until that
// one's disconnected event is logged, so the log reads disconnected
// (DUPLICATE_CLIENTID) before the newcomer's connected.
type takeover struct {
	s    *Server
	mu   sync.Mutex
	ids  map[string]*idLock
	held map[any]*idLock      // the lock each holder holds (a net.Conn, or an expiry's key)
	live map[string]*liveConn // the established connection of each id
	// closing is closed when the server closes: waiters give up (a
	// connection waiting for an id must not hold up the shutdown).
	closing   chan struct{}
	closeOnce sync.Once
}

type idLock struct {
	ch   chan struct{} // holds one token while locked
	id   string
	refs int // holders and waiters
}

// liveConn is an established connection; left is closed once its
// disconnected event went to the log.
type liveConn struct {
	cl   *mqtt.Client
	left chan struct{}
}

func newTakeover(s *Server) *takeover {
	return &takeover{s: s, ids: map[string]*idLock{}, held: map[any]*idLock{}, live: map[string]*liveConn{}, closing: make(chan struct{})}
}

// lock takes id's lock for holder until unlock(holder). It returns false,
// without the lock, once the server is closing.
func (t *takeover) lock(holder any, id string) bool {
	t.mu.Lock()
	l := t.ids[id]
	if l == nil {
		l = &idLock{ch: make(chan struct{}, 1), id: id}
		t.ids[id] = l
	}
	l.refs++
	t.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
	case <-t.closing:
		t.mu.Lock()
		t.release(l)
		t.mu.Unlock()
		return false
	}
	t.mu.Lock()
	t.held[holder] = l
	t.mu.Unlock()
	return true
}

// unlock releases the lock holder holds, if any.
func (t *takeover) unlock(holder any) {
	t.mu.Lock()
	l := t.held[holder]
	if l == nil {
		t.mu.Unlock()
		return
	}
	delete(t.held, holder)
	t.release(l)
	t.mu.Unlock()
	<-l.ch
}

// release drops a reference to l (t.mu held).
func (t *takeover) release(l *idLock) {
	if l.refs--; l.refs == 0 {
		delete(t.ids, l.id)
	}
}

// close makes every wait for a lock give up.
func (t *takeover) close() { t.closeOnce.Do(func() { close(t.closing) }) }

// connEnded is called by the listener once mochi is done with conn (its
// session refused, failed or torn down).
func (t *takeover) connEnded(conn net.Conn) { t.unlock(conn) }

// isTakeover reports whether cl was disconnected for a newer connection
// with its client id.
func isTakeover(cl *mqtt.Client) bool {
	return errors.Is(cl.StopCause(), packets.ErrSessionTakenOver)
}

// sessionHook is the takeover's side of mochi's hooks. It is added after
// the publish hook, so an arriving connection's lock is released after its
// connected event was produced, and a leaving one's disconnected event is
// produced before its successor is let through.
type sessionHook struct {
	mqtt.HookBase
	t *takeover
}

func (h *sessionHook) ID() string { return "iotpipe-sessions" }

func (h *sessionHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnSessionEstablish runs after authentication, before mochi looks for
// the id's existing session: it takes the id's lock and disconnects the
// id's live connection, waiting (up to the ack timeout) for its
// disconnected event.
func (h *sessionHook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || cl.Net.Conn == nil {
		return
	}
	t := h.t
	if !t.lock(cl.Net.Conn, cl.ID) {
		return
	}
	t.mu.Lock()
	prev := t.live[cl.ID]
	t.mu.Unlock()
	if prev == nil || prev.cl == cl {
		return
	}
	log := t.s.opts.Logger
	log.Info("session taken over: a new connection uses the client id", "client", cl.ID,
		"old_remote", prev.cl.Net.Remote, "new_remote", cl.Net.Remote)
	_ = t.s.mqtt.DisconnectClient(prev.cl, packets.ErrSessionTakenOver)
	wait := time.NewTimer(t.s.opts.AckTimeout)
	defer wait.Stop()
	select {
	case <-prev.left:
	case <-wait.C:
		log.Warn("session takeover: the previous connection did not end in time; its disconnected event may follow the new connected event",
			"client", cl.ID, "waited", t.s.opts.AckTimeout)
	}
}

// OnSessionEstablished records cl as its id's live connection (in the
// session store too, see disconnectCrashed) and releases the id's lock.
func (h *sessionHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline || cl.Net.Conn == nil {
		return
	}
	t := h.t
	lc := &liveConn{cl: cl, left: make(chan struct{})}
	if v, ok := t.s.conns.Load(cl); ok && t.s.store != nil {
		t.s.store.setLive(liveRecord(v.(*conn)))
	}
	t.mu.Lock()
	t.live[cl.ID] = lc
	t.mu.Unlock()
	t.unlock(cl.Net.Conn)
}

// OnDisconnect marks cl gone, in the session store too (its
// disconnected event was produced by the publish hook before), and takes
// the id's lock until mochi's teardown of cl is over.
func (h *sessionHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if cl.Net.Inline || cl.Net.Conn == nil {
		return // a stored session loaded at start: no connection
	}
	t := h.t
	t.mu.Lock()
	lc := t.live[cl.ID]
	mine := lc != nil && lc.cl == cl
	if mine {
		delete(t.live, cl.ID)
	}
	t.mu.Unlock()
	if mine {
		if t.s.store != nil {
			t.s.store.deleteLive(false, cl.ID)
		}
		close(lc.left)
	}
	t.lock(cl.Net.Conn, cl.ID)
}
