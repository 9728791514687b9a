// Package ingest is iotpipe's device front: an MQTT 3.1.1/5 broker on
// mochi-mqtt and an HTTP publish endpoint, writing every device event to
// the events topic of the log, and delivering the outbound topic back to
// subscribed devices. It reaches processors and sinks only through the
// log.
package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Producer is what ingest needs of a Kafka client: *kgo.Client.
type Producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// Options configures a Server.
type Options struct {
	// MQTTAddr is the plain MQTT TCP listen address ("" for none). Plain
	// listeners (this and WSAddr) carry no client certificate: without
	// Dev they authenticate tokens only, and only with TokenAuth.
	MQTTAddr string
	// TLSAddr is the MQTT over TLS listen address ("" for none):
	// devices authenticate with a client certificate, or a token.
	// Needs TLSCertificate.
	TLSAddr string
	// WSAddr is the MQTT over WebSocket listen address, plain ("" for
	// none); see MQTTAddr.
	WSAddr string
	// WSSAddr is the MQTT over WebSocket over TLS listen address ("" for
	// none): certificates or tokens. Needs TLSCertificate.
	WSSAddr string
	// TLSCertificate is the server certificate of the TLS listeners
	// (TLS 1.2 and later).
	TLSCertificate *tls.Certificate
	// Dev allows anonymous devices and authorizes everything, whatever
	// the identity options. Without it a connection must authenticate
	// (a registered client certificate, a token or the custom
	// authorizer) and its policies decide what it may do.
	Dev bool
	// Registry holds the things, certificates, CAs, policies and tokens
	// devices authenticate with (*registry.Registry). Connections are
	// refused until it is ready. nil: no certificate or token
	// authenticates.
	Registry Registry
	// CA is iotpipe's own CA certificate, when there is one: a client
	// certificate it signed that is not registered is refused as
	// unknown_certificate rather than untrusted_ca.
	CA *x509.Certificate
	// TokenAuth lets the plain listeners authenticate tokens (and the
	// custom authorizer): the secret then crosses the network in clear.
	// TLS listeners always accept them.
	TokenAuth bool
	// Authorizer, when its URL is set, is the custom authorizer that
	// decides tokens that are not registry tokens.
	Authorizer AuthorizerOptions
	// HTTPPrincipal returns the principal an HTTP request authenticated
	// as ("" when none): the API's authenticator, which also decided the
	// request is allowed. Its principal goes into the envelope
	// (iot.principal). A request without one is refused unless Dev
	// (then its principal is "http:anonymous").
	HTTPPrincipal func(r *http.Request) string
	// Topics are the log's topic names (default schemas.DefaultTopics()).
	Topics schemas.Topics
	// MaxInFlight bounds the publishes one connection may have on their
	// way to the log (default 256). When full, that connection's reader
	// waits and TCP pushes back on that client alone.
	MaxInFlight int
	// MaxPayload is the largest accepted payload in bytes (default
	// 131072, AWS IoT's limit); larger ones are refused with 0x95.
	MaxPayload int
	// AckTimeout is how long a publish may wait for the log before the
	// client is told it failed (default 10s): MQTT 5 gets a PUBACK with
	// 0x80, MQTT 3.1.1 has its connection closed. The publish keeps its
	// in-flight slot until the log answers it.
	AckTimeout time.Duration
	// SessionDir, when set, keeps MQTT sessions (persistent sessions'
	// subscriptions and queued QoS 1 messages, retained messages) in a
	// Pebble store there, so a device's session and the commands queued
	// for it survive a restart. Empty keeps them in memory.
	SessionDir string
	// MaxSessionExpiry is how long a persistent session outlives its
	// connection: MQTT 3.1.1 sessions (clean session off) for exactly
	// this long, MQTT 5 sessions for the interval they ask for, at most
	// this long (default 1h, AWS IoT's default; at most 7 days).
	MaxSessionExpiry time.Duration
	// ClientWriteQueue is how many packets may wait to be written to one
	// client (default 128). Every connection and every offline session
	// allocates it in full (8 bytes a slot); beyond it messages to that
	// client are dropped and counted (iotpipe_ingest_dropped_total
	// {reason="queue_full"}). A subscriber taking a high-rate stream over
	// MQTT needs more; the log is the better place to read a firehose.
	ClientWriteQueue int
	// MaxQueuedMessages bounds the QoS 1/2 messages one session may hold
	// unacknowledged or queued while offline (default 1024; beyond it
	// they are dropped and counted as reason="inflight_full").
	MaxQueuedMessages int
	// ConnectTimeout is how long a new MQTT connection may take to send
	// its CONNECT before it is closed (default 10s).
	ConnectTimeout time.Duration
	// MaxConnections caps open MQTT connections, authenticated or not;
	// beyond it new connections are closed at once (default: the
	// open-files limit less a tenth of it, at least 512; -1: no cap).
	MaxConnections int
	// LogWriteError, when set, says why the log refuses writes when it
	// knows (eventlog.Log.WriteError: the embedded log's disk is full);
	// a refused publish then carries that reason.
	LogWriteError func() error
	// Node names this ingest node; its outbound consumer group is
	// "iotpipe-outbound-<Node>" (default the host name).
	Node string
	// Logger receives logs (default slog.Default()).
	Logger *slog.Logger
	// writerIdle is how long a connection's PUBACK writer waits with
	// nothing to answer before it exits (default writerIdle); the next
	// publish starts it again. Tests shorten it.
	writerIdle time.Duration
}

func (o *Options) defaults() {
	if o.Topics.Events == "" {
		o.Topics = schemas.DefaultTopics()
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 256
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = 128 << 10
	}
	if o.AckTimeout <= 0 {
		o.AckTimeout = 10 * time.Second
	}
	if o.Node == "" {
		o.Node = "local"
	}
	if o.MaxSessionExpiry <= 0 {
		o.MaxSessionExpiry = time.Hour
	}
	if o.ClientWriteQueue <= 0 {
		o.ClientWriteQueue = 128
	}
	if o.MaxQueuedMessages <= 0 {
		o.MaxQueuedMessages = 1024
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = defaultMaxConnections()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.writerIdle <= 0 {
		o.writerIdle = writerIdle
	}
	o.Authorizer.defaults()
}

// Server is the device front. Start it with Start and stop it with Close.
type Server struct {
	opts     Options
	producer Producer
	mqtt     *mqtt.Server
	router   *mqtt.Client
	conns    sync.Map // *mqtt.Client -> *conn
	metrics  *metrics
	waiters  waiters
	ctx      context.Context
	cancel   context.CancelFunc
	promise  func(*kgo.Record, error)
	// promiseUnrouted completes QoS 0 records that skip the FIFO.
	promiseUnrouted func(*kgo.Record, error)
	subGen          atomic.Uint64 // bumped on every subscribe/unsubscribe
	// closing is closed when Close starts: readers waiting for an
	// in-flight slot give up.
	closing chan struct{}
	// takeover gives a client id one connection at a time.
	takeover *takeover
	// listeners are the MQTT listeners by id (after Start), listener the
	// plain TCP one; open counts the connections open on all of them.
	listeners map[string]*listener
	listener  *listener
	open      atomic.Int64
	closeOnce sync.Once
	drops     *dropMetrics
	refusals  *rateLog // publishesRefused's log lines
	// store keeps sessions (with SessionDir); expiry removes offline
	// sessions past their expiry.
	store  *sessionStore
	expiry *expiry
	// auth decides who connects and what each connection may do.
	auth *auth
}

// New returns a Server writing to producer.
func New(producer Producer, opts Options) (*Server, error) {
	opts.defaults()
	if err := checkSessionExpiry(opts.MaxSessionExpiry); err != nil {
		return nil, err
	}
	if opts.MaxQueuedMessages > 65535 {
		return nil, fmt.Errorf("mqtt max queued messages %d: at most 65535 (MQTT packet ids)", opts.MaxQueuedMessages)
	}
	ms := mqtt.New(&mqtt.Options{
		InlineClient: true,
		Logger:       newQuietLogger(opts.Logger.With("component", "mqtt"), 10*time.Second),
		Capabilities: func() *mqtt.Capabilities {
			c := mqtt.NewDefaultServerCapabilities()
			// Fixed header + topic + properties fit in the slack.
			c.MaximumPacketSize = uint32(opts.MaxPayload) + 64<<10
			c.MaximumClientWritesPending = int32(opts.ClientWriteQueue)
			c.MaximumInflight = uint16(opts.MaxQueuedMessages)
			c.MaximumSessionExpiryInterval = uint32(opts.MaxSessionExpiry / time.Second)
			return c
		}(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{opts: opts, producer: producer, mqtt: ms, metrics: newMetrics(), ctx: ctx, cancel: cancel, closing: make(chan struct{})}
	s.waiters.m = map[string]chan schemas.Outbound{}
	s.takeover = newTakeover(s)
	s.expiry = newExpiry(s)
	s.refusals = newRateLog(10 * time.Second)
	s.drops = newDropMetrics(ms.Info)
	s.promise = s.produced
	s.promiseUnrouted = s.producedUnrouted
	if (opts.TLSAddr != "" || opts.WSSAddr != "") && opts.TLSCertificate == nil {
		return nil, errors.New("mqtt over TLS: no server certificate")
	}
	s.auth = newAuth(s)
	if err := ms.AddHook(&authHook{a: s.auth}, nil); err != nil {
		return nil, err
	}
	if opts.SessionDir != "" {
		st, err := openSessionStore(opts.SessionDir, opts.Logger, s.storedExpiry)
		if err != nil {
			return nil, err
		}
		if err := ms.AddHook(st, nil); err != nil {
			st.Stop()
			return nil, err
		}
		s.store = st
	}
	if err := ms.AddHook(&publishHook{s: s}, nil); err != nil {
		return nil, err
	}
	// After the publish hook: see sessionHook.
	if err := ms.AddHook(&sessionHook{t: s.takeover}, nil); err != nil {
		return nil, err
	}
	if err := ms.AddHook(&expiryHook{e: s.expiry}, nil); err != nil {
		return nil, err
	}
	if err := ms.AddHook(&connectHook{s: s}, nil); err != nil {
		return nil, err
	}
	// Last: a session a registry change ended while it was being
	// established is ended once it is (see auth.recheck).
	if err := ms.AddHook(&establishedHook{a: s.auth}, nil); err != nil {
		return nil, err
	}
	s.router = ms.NewClient(nil, "local", "iotpipe-router", true)
	s.router.Properties.ProtocolVersion = 5 // what it routes keeps MQTT 5 semantics (message expiry)
	return s, nil
}

// Start listens on the MQTT listeners the options name and starts
// serving. A listen failure is a *ListenError.
func (s *Server) Start() error {
	specs := s.listenerSpecs()
	if len(specs) == 0 {
		return errors.New("mqtt: no listener address (set MQTTAddr, TLSAddr, WSAddr or WSSAddr)")
	}
	lns := make([]net.Listener, 0, len(specs))
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, sp := range specs {
		ln, err := net.Listen("tcp", sp.addr)
		if err != nil {
			closeAll()
			return &ListenError{Listener: sp.id, Addr: sp.addr, Err: err}
		}
		lns = append(lns, ln)
	}
	// Serve loads the stored sessions; the listeners are served only
	// after the loaded sessions' expiry is set.
	if err := s.mqtt.Serve(); err != nil {
		closeAll()
		return fmt.Errorf("mqtt serve: %w", err)
	}
	s.restoreStored()
	s.expiry.scheduleLoaded()
	s.disconnectCrashed()
	s.auth.start()
	s.listeners = make(map[string]*listener, len(specs))
	for i, sp := range specs {
		l := newListener(s, sp.id, watchListener{s.wrapListener(sp, lns[i])})
		s.listeners[sp.id] = l
		if sp.id == listenerTCP {
			s.listener = l
		}
	}
	for _, sp := range specs {
		l := s.listeners[sp.id]
		if err := s.mqtt.AddListener(l); err != nil {
			closeAll()
			return fmt.Errorf("mqtt listener %s: %w", sp.id, err)
		}
		s.mqtt.Listeners.Serve(l.ID(), s.mqtt.EstablishConnection)
		s.opts.Logger.Info("mqtt listening", "listener", sp.id, "addr", l.Address(), "auth", s.auth.describe(sp.id))
	}
	s.opts.Logger.Info("mqtt serving", "dev", s.opts.Dev, "max_connections", s.opts.MaxConnections, "connect_timeout", s.opts.ConnectTimeout)
	return nil
}

// MQTTAddr returns the plain MQTT listener's address (after Start; nil
// when there is none).
func (s *Server) MQTTAddr() net.Addr { return s.listenerAddr(listenerTCP) }

// TLSAddr returns the MQTT over TLS listener's address (after Start;
// nil when there is none).
func (s *Server) TLSAddr() net.Addr { return s.listenerAddr(listenerTLS) }

// WSAddr returns the MQTT over WebSocket listener's address (after
// Start; nil when there is none).
func (s *Server) WSAddr() net.Addr { return s.listenerAddr(listenerWS) }

// WSSAddr returns the MQTT over secure WebSocket listener's address
// (after Start; nil when there is none).
func (s *Server) WSSAddr() net.Addr { return s.listenerAddr(listenerWSS) }

func (s *Server) listenerAddr(id string) net.Addr {
	if l := s.listeners[id]; l != nil {
		return l.ln.Addr()
	}
	return nil
}

// Close disconnects clients and stops the broker. Publishes already
// handed to the producer complete or fail with the producer. Calls after
// the first do nothing.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closing)
		s.auth.stop()
		s.takeover.close()
		s.expiry.stop()
		err = s.mqtt.Close()
		s.cancel()
	})
	return err
}

// lifecycle writes a connected/disconnected event to the log and, once
// logged, publishes AWS IoT's presence message for it. It goes through
// the connection's FIFO so presence messages keep their order with the
// client's publishes.
func (s *Server) lifecycle(cl *mqtt.Client, typ schemas.EventType, c *conn, cause error) {
	ev := presence(cl, typ, c.session, c.principal, cause, time.Now())
	payload, _ := ev.marshal()
	topic := "$aws/events/presence/" + string(typ) + "/" + cl.ID
	c.produce(typ, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic, Payload: payload, PacketID: 1,
	}, false)
	s.metrics.lifecycle.WithLabelValues(string(typ)).Inc()
}
