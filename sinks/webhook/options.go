package webhook

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultGroup is the consumer group of the webhook executor.
const DefaultGroup = "iotpipe-webhook"

// Options configure an Executor. Zero fields take the default in their
// comment; only Brokers is required.
type Options struct {
	// Brokers are the Kafka seed brokers ("host:port"). Required.
	Brokers []string
	// ActionsTopic is read for firings. Default schemas.DefaultTopics().Actions
	// ("iotpipe.actions").
	ActionsTopic string
	// DLQTopic receives firings that could not be delivered. Default
	// schemas.DefaultTopics().DLQ ("iotpipe.dlq").
	DLQTopic string
	// Group is the consumer group. Default DefaultGroup ("iotpipe-webhook").
	Group string
	// KafkaOptions are appended to the client options the executor sets
	// (seed brokers, group, topic, manual commits), e.g. for TLS or SASL.
	KafkaOptions []kgo.Opt

	// Secret signs every request whose action has no Params["secret"].
	// Default none: such requests are sent unsigned.
	Secret []byte
	// HTTPClient sends the requests. Default: a client with a transport
	// keeping TargetConcurrency idle connections per host. Whatever the
	// client, redirects are not followed (a 3xx is final) and its Timeout
	// is left alone: RequestTimeout bounds each attempt.
	HTTPClient *http.Client
	// RequestTimeout bounds one attempt, from connecting to reading the
	// response headers and the first bytes of the body. Default 10s.
	RequestTimeout time.Duration

	// MaxAttempts is the most attempts per firing, the first included.
	// Default 20.
	MaxAttempts int
	// MaxElapsed is the longest time from a firing's first attempt to its
	// last: when the next wait would pass it, the firing is dead-lettered
	// instead. Default 15m.
	MaxElapsed time.Duration
	// InitialBackoff is the wait bound after the first failed attempt; it
	// doubles after each further one up to MaxBackoff, and the wait is
	// uniform in [0, bound] (full jitter). Default 500ms.
	InitialBackoff time.Duration
	// MaxBackoff caps the backoff bound. Default 30s.
	MaxBackoff time.Duration
	// MaxRetryAfter caps a target's Retry-After (on 429 and 503), which
	// otherwise replaces the backoff. Default 5m.
	MaxRetryAfter time.Duration

	// TargetConcurrency is the number of requests in flight per target
	// (scheme://host:port). Default 8.
	TargetConcurrency int
	// TargetQueue is the number of firings waiting per target. When one
	// target's queue is full, reading the log pauses until it has room:
	// size it for the longest outage you want absorbed without slowing
	// other targets (outage seconds x that target's firings per second).
	// Default 10000.
	TargetQueue int
	// MaxInFlight is the number of action records read but not yet
	// acknowledged (queued, being delivered, or waiting for an earlier
	// record of their partition to be acknowledged). Reading pauses when
	// it is reached. Default 50000.
	MaxInFlight int
	// CommitInterval is how often acknowledged offsets are committed.
	// Default 1s. Offsets are also committed when partitions are revoked
	// and on Stop.
	CommitInterval time.Duration

	// Logger receives the executor's logs. Default slog.Default().
	Logger *slog.Logger
}

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() (Options, error) {
	if len(o.Brokers) == 0 {
		return o, errors.New("webhook executor: no Kafka brokers configured (set Options.Brokers)")
	}
	topics := schemas.DefaultTopics()
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.ActionsTopic, topics.Actions)
	def(&o.DLQTopic, topics.DLQ)
	def(&o.Group, DefaultGroup)
	defDur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defDur(&o.RequestTimeout, 10*time.Second)
	defDur(&o.MaxElapsed, 15*time.Minute)
	defDur(&o.InitialBackoff, 500*time.Millisecond)
	defDur(&o.MaxBackoff, 30*time.Second)
	defDur(&o.MaxRetryAfter, 5*time.Minute)
	defDur(&o.CommitInterval, time.Second)
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	defInt(&o.MaxAttempts, 20)
	defInt(&o.TargetConcurrency, 8)
	defInt(&o.TargetQueue, 10000)
	defInt(&o.MaxInFlight, 50000)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	var c http.Client
	if o.HTTPClient != nil {
		c = *o.HTTPClient
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = o.TargetConcurrency
		t.MaxIdleConns = 0
		c.Transport = t
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	o.HTTPClient = &c
	return o, nil
}

func (o Options) policy() policy {
	return policy{
		timeout:       o.RequestTimeout,
		maxAttempts:   o.MaxAttempts,
		maxElapsed:    o.MaxElapsed,
		initial:       o.InitialBackoff,
		max:           o.MaxBackoff,
		maxRetryAfter: o.MaxRetryAfter,
	}
}
