package mqttload

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Defaults used by Config.withDefaults for fields left at their zero value.
const (
	// DefaultAddr is the broker address used when Config.Addr is empty.
	DefaultAddr = "127.0.0.1:1883"
	// DefaultConns is the number of publishing connections.
	DefaultConns = 100
	// DefaultSize is the payload size in bytes (a padded JSON object).
	DefaultSize = 200
	// DefaultTopic is the topic pattern; {conn} is the connection index,
	// {client} the client id.
	DefaultTopic = "bench/{conn}/telemetry"
	// DefaultClientPrefix prefixes the connection index to form client ids.
	DefaultClientPrefix = "bench-"
	// DefaultWindow is the QoS 1 in-flight window per connection.
	DefaultWindow = 64
	// DefaultKeepalive is the MQTT keepalive sent in CONNECT.
	DefaultKeepalive = 60 * time.Second
	// DefaultDrain bounds the wait for outstanding PUBACKs after sending stops.
	DefaultDrain = 5 * time.Second
	// DefaultDialTimeout bounds each TCP dial plus CONNECT/CONNACK exchange.
	DefaultDialTimeout = 10 * time.Second
	// DefaultProgressInterval is how often Config.Progress is called.
	DefaultProgressInterval = time.Second
	// MaxWindow is the largest in-flight window (packet ids are 16 bits).
	MaxWindow = 32768
	// MaxSize is the largest payload accepted.
	MaxSize = 1 << 20
)

// Config describes one load run. The zero value of every field selects the
// documented default, except that one of Duration or Count must be set.
type Config struct {
	// Addr is the broker's host:port. Default DefaultAddr.
	Addr string
	// Conns is the number of publishing connections. Default DefaultConns.
	Conns int
	// QoS is the publish QoS, 0 or 1.
	QoS byte
	// Size is the payload size in bytes: a JSON object such as
	// {"temperature":21.37,"seq":         42,"conn":7,"pad":"xxxx"} padded to
	// exactly Size bytes. Default DefaultSize; at least MinSize.
	Size int
	// Topic is the topic pattern: {conn} is replaced by the connection
	// index and {client} by the client id. Default DefaultTopic.
	Topic string
	// ClientPrefix prefixes the connection index in client ids.
	// Default DefaultClientPrefix.
	ClientPrefix string
	// Username and Password are sent in CONNECT when Username is not empty.
	Username, Password string
	// TLS, when set, makes every connection (the subscriber's too) TLS
	// with this configuration (its client certificate, its roots).
	// Default nil: plain TCP.
	TLS *tls.Config
	// Window is the maximum number of unacknowledged QoS 1 messages per
	// connection. Default DefaultWindow; at most MaxWindow. Ignored at QoS 0.
	Window int
	// Duration is the measurement window. Exactly one of Duration and
	// Count must be set.
	Duration time.Duration
	// Count is the total number of messages to send across all connections
	// (spread evenly); the whole run is measured and Warmup must be zero.
	Count int64
	// Rate is the target total publish rate in messages per second across
	// all connections; 0 means as fast as the broker allows.
	Rate float64
	// Warmup is a period of load before the measurement window whose
	// messages are not counted in the result. Only with Duration.
	Warmup time.Duration
	// Drain bounds the wait for outstanding PUBACKs once sending stopped.
	// Default DefaultDrain.
	Drain time.Duration
	// Keepalive is the keepalive announced in CONNECT. Default
	// DefaultKeepalive.
	Keepalive time.Duration
	// DialTimeout bounds dial plus CONNECT/CONNACK per connection.
	// Default DefaultDialTimeout.
	DialTimeout time.Duration
	// Subscribe, when not empty, adds one subscriber connection on this
	// topic filter that counts the messages it receives (e.g. "bench/#").
	Subscribe string
	// SubscribeQoS is the QoS requested by the subscriber (0 or 1).
	SubscribeQoS byte
	// Progress, when not nil, is called every ProgressInterval from one
	// goroutine with cumulative counters.
	Progress func(Progress)
	// ProgressInterval defaults to DefaultProgressInterval.
	ProgressInterval time.Duration
}

// MinSize is the smallest supported payload size in bytes.
const MinSize = len(payloadHead) + tempWidth + len(payloadSeq) + seqWidth + len(payloadConn) + connWidth + len(payloadPad) + len(payloadTail)

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Conns == 0 {
		c.Conns = DefaultConns
	}
	if c.Size == 0 {
		c.Size = DefaultSize
	}
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.ClientPrefix == "" {
		c.ClientPrefix = DefaultClientPrefix
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.Drain == 0 {
		c.Drain = DefaultDrain
	}
	if c.Keepalive == 0 {
		c.Keepalive = DefaultKeepalive
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	return c
}

// validate reports the first invalid field of a defaulted Config.
func (c Config) validate() error {
	var errs []error
	if c.Conns < 1 {
		errs = append(errs, fmt.Errorf("conns must be at least 1, got %d", c.Conns))
	}
	if c.QoS > 1 {
		errs = append(errs, fmt.Errorf("qos must be 0 or 1, got %d", c.QoS))
	}
	if c.SubscribeQoS > 1 {
		errs = append(errs, fmt.Errorf("subscriber qos must be 0 or 1, got %d", c.SubscribeQoS))
	}
	if c.Size < MinSize || c.Size > MaxSize {
		errs = append(errs, fmt.Errorf("size must be between %d and %d bytes, got %d", MinSize, MaxSize, c.Size))
	}
	if c.Window < 1 || c.Window > MaxWindow {
		errs = append(errs, fmt.Errorf("window must be between 1 and %d, got %d", MaxWindow, c.Window))
	}
	if (c.Duration > 0) == (c.Count > 0) {
		errs = append(errs, errors.New("set exactly one of duration and count"))
	}
	if c.Duration < 0 || c.Count < 0 || c.Warmup < 0 || c.Rate < 0 || c.Drain < 0 {
		errs = append(errs, errors.New("duration, count, warmup, drain and rate must not be negative"))
	}
	if c.Count > 0 && c.Warmup > 0 {
		errs = append(errs, errors.New("warmup applies only to duration runs; a count run measures every message"))
	}
	if strings.ContainsAny(c.Topic, "+#") || c.Topic == "" {
		errs = append(errs, fmt.Errorf("topic pattern %q must be a non-empty topic name without wildcards", c.Topic))
	}
	if k := c.Keepalive / time.Second; k < 0 || k > 65535 {
		errs = append(errs, fmt.Errorf("keepalive must be between 0s and 65535s, got %s", c.Keepalive))
	}
	return errors.Join(errs...)
}

// topicFor expands the topic pattern for connection i.
func (c Config) topicFor(i int) string {
	t := strings.ReplaceAll(c.Topic, "{conn}", strconv.Itoa(i))
	return strings.ReplaceAll(t, "{client}", c.clientID(i))
}

// clientID is the client identifier of connection i.
func (c Config) clientID(i int) string {
	return c.ClientPrefix + strconv.Itoa(i)
}
