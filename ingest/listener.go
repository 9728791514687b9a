package ingest

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// listener is the MQTT TCP listener handed to mochi (in place of
// listeners.Net). Before authentication a connection costs a descriptor
// and a goroutine, so it bounds both: a connection has ConnectTimeout to
// send its CONNECT, and beyond MaxConnections open connections a new one
// is closed at once (existing clients are not affected). An Accept error
// (EMFILE when descriptors run out) is retried after a pause instead of
// ending the listener. It also tells the takeover when mochi is done with
// a connection.
type listener struct {
	s   *Server
	ln  net.Listener
	id  string
	max int64 // open connections allowed, on all listeners; <= 0 means no cap
	// open counts the connections open on all the server's listeners.
	open *atomic.Int64
	end  atomic.Bool
	mu   sync.Mutex
	// conns are the open connections; true once the CONNECT was read.
	conns  map[net.Conn]bool
	logged *rateLog
}

func newListener(s *Server, id string, ln net.Listener) *listener {
	return &listener{s: s, ln: ln, id: id, max: int64(s.opts.MaxConnections), open: &s.open, conns: map[net.Conn]bool{}, logged: newRateLog(10 * time.Second)}
}

// ID returns the listener's id.
func (l *listener) ID() string { return l.id }

// Address returns the listen address.
func (l *listener) Address() string { return l.ln.Addr().String() }

// Protocol returns the listen network.
func (l *listener) Protocol() string { return l.ln.Addr().Network() }

// Init does nothing: the socket is open already.
func (l *listener) Init(*slog.Logger) error { return nil }

// Serve accepts connections until Close and hands each to establish.
func (l *listener) Serve(establish listeners.EstablishFn) {
	var pause time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.end.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or another transient failure: wait and
			// accept again (net/http does the same), never stop listening.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			l.warn("accept", "mqtt accept failed; retrying", "err", err, "retry_in", pause, "hint", acceptHint(err))
			time.Sleep(pause)
			continue
		}
		pause = 0
		if l.max > 0 && l.open.Load() >= l.max {
			l.s.metrics.refused.WithLabelValues("connection_limit").Inc()
			l.warn("limit", "mqtt connection refused: the connection limit is reached (existing clients are served; raise --mqtt-max-connections and the open-files limit to admit more)",
				"remote", c.RemoteAddr().String(), "limit", l.max)
			c.Close()
			continue
		}
		l.open.Add(1)
		l.mu.Lock()
		if l.end.Load() {
			l.mu.Unlock()
			c.Close()
			l.open.Add(-1)
			return
		}
		l.conns[c] = false
		l.mu.Unlock()
		go l.handle(c, establish)
	}
}

// handle runs mochi's handling of c under the CONNECT deadline (mochi
// replaces it with the keepalive deadline once the CONNECT is read).
func (l *listener) handle(c net.Conn, establish listeners.EstablishFn) {
	if t := l.s.opts.ConnectTimeout; t > 0 {
		_ = c.SetReadDeadline(time.Now().Add(t))
	}
	var err error
	if l.handshake(c) {
		err = establish(l.id, c)
	}
	l.s.takeover.connEnded(c)
	l.mu.Lock()
	connected := l.conns[c]
	delete(l.conns, c)
	l.mu.Unlock()
	l.open.Add(-1)
	if !connected && errors.Is(err, os.ErrDeadlineExceeded) {
		l.s.metrics.refused.WithLabelValues("connect_timeout").Inc()
		l.warn("connect_timeout", "mqtt connection closed: no CONNECT within the connect timeout",
			"remote", c.RemoteAddr().String(), "timeout", l.s.opts.ConnectTimeout)
		return
	}
	if err != nil {
		l.s.opts.Logger.Debug("mqtt connection ended", "remote", c.RemoteAddr().String(), "err", err)
	}
}

// connected marks c as past its CONNECT (called from the OnConnect hook).
func (l *listener) connected(c net.Conn) {
	l.mu.Lock()
	if _, ok := l.conns[c]; ok {
		l.conns[c] = true
	}
	l.mu.Unlock()
}

// Close stops accepting, disconnects the clients (closeClients) and
// closes the connections that have not sent a CONNECT.
func (l *listener) Close(closeClients listeners.CloseFn) {
	if l.end.Swap(true) {
		return
	}
	_ = l.ln.Close()
	closeClients(l.id)
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
}

// warn logs msg at most once per 10s per key, with the count held back.
func (l *listener) warn(key, msg string, args ...any) {
	if ok, n := l.logged.allow(key, time.Now()); ok {
		if n > 0 {
			args = append(args, "suppressed", n)
		}
		l.s.opts.Logger.Warn(msg, args...)
	}
}

func acceptHint(err error) string {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return "out of file descriptors: raise the open-files limit (ulimit -n) or lower --mqtt-max-connections"
	}
	return ""
}

// connectHook tells the listener a connection's CONNECT was read.
type connectHook struct {
	mqtt.HookBase
	s *Server
}

func (h *connectHook) ID() string { return "iotpipe-connect" }

func (h *connectHook) Provides(b byte) bool { return b == mqtt.OnConnect }

func (h *connectHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if l := h.s.listeners[cl.Net.Listener]; l != nil && cl.Net.Conn != nil {
		l.connected(cl.Net.Conn)
	}
	return nil
}

// defaultMaxConnections sizes the connection cap from the open-files
// limit, leaving room for the log, the stores, HTTP and the rest: the
// limit less a tenth of it, at least 512, and never below 64.
func defaultMaxConnections() int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur == 0 || r.Cur > 1<<30 {
		return 0 // unknown or unlimited: no cap
	}
	n := int(r.Cur)
	return max(n-max(n/10, 512), 64)
}
