package ingest

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// wsListener is a net.Listener of MQTT over WebSocket connections: an
// HTTP server on ln (TLS with conf) upgrades requests on any path that
// offer the "mqtt" subprotocol (browsers' MQTT clients do) and hands
// each connection to Accept, so the MQTT listener around it applies the
// connection cap, the CONNECT deadline and the shutdown as for TCP. A
// request may carry a token for the CONNECT (the MQTT password is one
// too): the query parameter token (browsers cannot set headers on a
// WebSocket) or an Authorization: Bearer header.
type wsListener struct {
	ln    net.Listener
	srv   *http.Server
	up    websocket.Upgrader
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newWSListener(ln net.Listener, conf *tls.Config, headerTimeout time.Duration, log *slog.Logger) *wsListener {
	l := &wsListener{ln: ln, conns: make(chan net.Conn), done: make(chan struct{})}
	l.up = websocket.Upgrader{
		Subprotocols: []string{"mqtt", "mqttv3.1"},
		// Any origin: a browser page authenticates with its own token,
		// no cookie or ambient credential is involved.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	if headerTimeout <= 0 {
		headerTimeout = 10 * time.Second
	}
	l.srv = &http.Server{
		Handler:           l,
		ReadHeaderTimeout: headerTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	if conf != nil {
		conf = conf.Clone()
		conf.NextProtos = []string{"http/1.1"} // a WebSocket upgrade needs HTTP/1.1
		l.srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		ln = tls.NewListener(ln, conf)
	}
	go func() { _ = l.srv.Serve(ln) }()
	return l
}

// ServeHTTP upgrades a request and hands the connection to Accept.
func (l *wsListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !websocket.IsWebSocketUpgrade(r) {
		http.Error(w, "MQTT over WebSocket: send a WebSocket upgrade with the mqtt subprotocol", http.StatusBadRequest)
		return
	}
	c, err := l.up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered the client
	}
	wc := &wsConn{Conn: c.NetConn(), ws: c, token: requestToken(r), header: r.Header, query: r.URL.RawQuery}
	if r.TLS != nil {
		st := *r.TLS
		wc.tls = &st
	}
	select {
	case l.conns <- wc:
	case <-l.done:
		c.Close()
	}
}

// requestToken returns the token of a WebSocket request: its token query
// parameter, else its Authorization: Bearer header, else "".
func requestToken(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Accept returns the next upgraded connection.
func (l *wsListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops the HTTP server; connections already upgraded are the
// MQTT listener's to close.
func (l *wsListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.srv.Close()
}

// Addr returns the listen address.
func (l *wsListener) Addr() net.Addr { return l.ln.Addr() }

// wsConn is an MQTT over WebSocket connection as a byte stream: MQTT
// packets may span binary messages and a message may hold several. It
// keeps what the upgrade request said for authentication.
type wsConn struct {
	net.Conn // the upgraded connection (deadlines, addresses)
	ws       *websocket.Conn
	r        io.Reader // the current message, nil between messages
	wmu      sync.Mutex
	// token is the request's token (see requestToken); header and query
	// are its headers and query string, for the custom authorizer.
	token  string
	header http.Header
	query  string
	// tls is the TLS state of a wss connection (its client certificate).
	tls *tls.ConnectionState
}

// errNotBinary ends a connection that sent a text message.
var errNotBinary = errors.New("mqtt over websocket: a text message (MQTT travels in binary messages)")

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				return 0, errNotBinary
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			err = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// Write sends p as one binary message.
func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error { return c.ws.Close() }
