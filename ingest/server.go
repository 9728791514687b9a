// Package ingest is iotpipe's device front: an MQTT 3.1.1/5 broker on
// mochi-mqtt and an HTTP publish endpoint, writing every device event to
// the events topic of the log, and delivering the outbound topic back to
// subscribed devices. It reaches processors and sinks only through the
// log.
package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
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
	// MQTTAddr is the MQTT TCP listen address (default ":1883"; "" with
	// NoMQTT set disables it).
	MQTTAddr string
	// Dev allows anonymous devices. Without it, and until identity is
	// configured, every connection is refused.
	Dev bool
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
}

func (o *Options) defaults() {
	if o.MQTTAddr == "" {
		o.MQTTAddr = ":1883"
	}
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
	addr     net.Addr
	promise  func(*kgo.Record, error)
	// promiseUnrouted completes QoS 0 records that skip the FIFO.
	promiseUnrouted func(*kgo.Record, error)
	subGen          atomic.Uint64 // bumped on every subscribe/unsubscribe
	// closing is closed when Close starts: readers waiting for an
	// in-flight slot give up.
	closing chan struct{}
	// takeover gives a client id one connection at a time; listener is
	// the MQTT listener (after Start).
	takeover  *takeover
	listener  *listener
	closeOnce sync.Once
	drops     *dropMetrics
	refusals  *rateLog // publishesRefused's log lines
	// store keeps sessions (with SessionDir); expiry removes offline
	// sessions past their expiry.
	store  *sessionStore
	expiry *expiry
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
	if opts.Dev {
		if err := ms.AddHook(new(auth.AllowHook), nil); err != nil {
			return nil, err
		}
	} else {
		if err := ms.AddHook(&denyHook{log: opts.Logger}, nil); err != nil {
			return nil, err
		}
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
	s.router = ms.NewClient(nil, "local", "iotpipe-router", true)
	s.router.Properties.ProtocolVersion = 5 // what it routes keeps MQTT 5 semantics (message expiry)
	return s, nil
}

// Start listens for MQTT and starts serving.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.MQTTAddr)
	if err != nil {
		return fmt.Errorf("mqtt listen %s: %w", s.opts.MQTTAddr, err)
	}
	s.addr = ln.Addr()
	// Serve loads the stored sessions; the listener is served only after
	// the loaded sessions' expiry is set.
	if err := s.mqtt.Serve(); err != nil {
		ln.Close()
		return fmt.Errorf("mqtt serve: %w", err)
	}
	s.restoreStored()
	s.expiry.scheduleLoaded()
	s.disconnectCrashed()
	s.listener = newListener(s, "tcp", watchListener{ln})
	if err := s.mqtt.AddListener(s.listener); err != nil {
		ln.Close()
		return fmt.Errorf("mqtt listener: %w", err)
	}
	s.mqtt.Listeners.Serve(s.listener.ID(), s.mqtt.EstablishConnection)
	s.opts.Logger.Info("mqtt listening", "addr", s.addr.String(), "dev", s.opts.Dev,
		"max_connections", s.opts.MaxConnections, "connect_timeout", s.opts.ConnectTimeout)
	return nil
}

// MQTTAddr returns the MQTT listener's address (after Start).
func (s *Server) MQTTAddr() net.Addr { return s.addr }

// Close disconnects clients and stops the broker. Publishes already
// handed to the producer complete or fail with the producer. Calls after
// the first do nothing.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closing)
		s.takeover.close()
		s.expiry.stop()
		err = s.mqtt.Close()
		s.cancel()
	})
	return err
}

// denyHook refuses every connection: identity is not configured yet.
type denyHook struct {
	mqtt.HookBase
	log *slog.Logger
}

func (h *denyHook) ID() string { return "iotpipe-deny" }

func (h *denyHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (h *denyHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	h.log.Warn("connection refused: anonymous access needs --dev (identity is not configured)", "client", cl.ID, "remote", cl.Net.Remote)
	return false
}

func (h *denyHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool { return false }

// lifecycle writes a connected/disconnected event to the log and, once
// logged, publishes AWS IoT's presence message for it. It goes through
// the connection's FIFO so presence messages keep their order with the
// client's publishes.
func (s *Server) lifecycle(cl *mqtt.Client, typ schemas.EventType, c *conn, cause error) {
	ev := presence(cl, typ, c.session, cause, time.Now())
	payload, _ := ev.marshal()
	topic := "$aws/events/presence/" + string(typ) + "/" + cl.ID
	c.produce(typ, packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic, Payload: payload, PacketID: 1,
	}, false)
	s.metrics.lifecycle.WithLabelValues(string(typ)).Inc()
}
