package ingest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// The MQTT listeners' ids (mochi's listener ids, and the listener label
// of logs).
const (
	listenerTCP = "tcp" // plain MQTT
	listenerTLS = "tls" // MQTT over TLS
	listenerWS  = "ws"  // MQTT over WebSocket
	listenerWSS = "wss" // MQTT over WebSocket over TLS
)

// ListenError is the error of a listener Start could not open.
type ListenError struct {
	// Listener is the listener's id: tcp, tls, ws or wss.
	Listener string
	// Addr is the address it was to listen on.
	Addr string
	// Err is why it could not.
	Err error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("mqtt listen %s (%s): %v", e.Addr, e.Listener, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// listenerSpec is a listener the options ask for.
type listenerSpec struct {
	id, addr string
}

// secure reports whether the listener's connections are TLS.
func (sp listenerSpec) secure() bool { return sp.id == listenerTLS || sp.id == listenerWSS }

func (s *Server) listenerSpecs() []listenerSpec {
	var out []listenerSpec
	for _, sp := range []listenerSpec{{listenerTCP, s.opts.MQTTAddr}, {listenerTLS, s.opts.TLSAddr}, {listenerWS, s.opts.WSAddr}, {listenerWSS, s.opts.WSSAddr}} {
		if sp.addr != "" {
			out = append(out, sp)
		}
	}
	return out
}

// wrapListener returns what the listener of sp accepts connections from:
// ln itself (tcp), its TLS connections (tls), or the WebSocket
// connections an HTTP server on it upgrades (ws, wss).
func (s *Server) wrapListener(sp listenerSpec, ln net.Listener) net.Listener {
	var conf *tls.Config
	if sp.secure() {
		conf = s.tlsConfig()
	}
	switch sp.id {
	case listenerTLS:
		return tls.NewListener(ln, conf)
	case listenerWS, listenerWSS:
		return newWSListener(ln, conf, s.opts.ConnectTimeout, s.opts.Logger)
	}
	return ln
}

// tlsConfig is the TLS listeners' configuration: TLS 1.2 or later, the
// server certificate, and a client certificate asked for but not
// required nor verified in the handshake: the CONNECT decides (a
// registered certificate, one registered just in time under a
// registered CA, or none and a token), so a refused device gets a
// CONNACK with a reason code instead of a failed handshake. The
// handshake still proves the client holds the certificate's key.
func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{*s.opts.TLSCertificate},
		MinVersion:   tls.VersionTLS12,
		ClientAuth:   tls.RequestClientCert,
	}
}

// handshake runs the TLS handshake of c, when c is a TLS connection,
// under the CONNECT deadline already set on it, and reports whether the
// connection goes on; a failed handshake is counted, logged (rate
// limited) and closed.
func (l *listener) handshake(c net.Conn) bool {
	tc, ok := unwrapConn(c).(*tls.Conn)
	if !ok {
		return true
	}
	ctx := context.Background()
	if t := l.s.opts.ConnectTimeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	start := time.Now()
	err := tc.HandshakeContext(ctx)
	if err == nil {
		l.s.metrics.handshake.Observe(time.Since(start).Seconds())
		return true
	}
	l.s.metrics.authRefused.WithLabelValues("tls_handshake").Inc()
	l.warn("tls_handshake", "mqtt TLS handshake failed (a device that does not trust the server certificate gives up here: give it iotpipe's CA file)",
		"listener", l.id, "remote", c.RemoteAddr().String(), "err", err)
	c.Close()
	return false
}

// unwrapConn returns the connection a listener's topicWatch wraps.
func unwrapConn(c net.Conn) net.Conn {
	if w, ok := c.(*topicWatch); ok {
		return w.Conn
	}
	return c
}

// tlsState returns the TLS state of c (its client certificate first in
// PeerCertificates), nil when c is not TLS.
func tlsState(c net.Conn) *tls.ConnectionState {
	switch cc := unwrapConn(c).(type) {
	case *tls.Conn:
		st := cc.ConnectionState()
		return &st
	case *wsConn:
		return cc.tls
	}
	return nil
}
