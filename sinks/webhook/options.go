package webhook

import (
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/iotpipe/iotpipe/sinks/ledger"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultGroup is the consumer group of the webhook executor.
const DefaultGroup = "iotpipe-webhook"

// ClientFactory makes franz-go clients for the log (eventlog.Log does).
type ClientFactory interface {
	Client(opts ...kgo.Opt) (*kgo.Client, error)
}

// Options configure an Executor. Zero fields take the default in their
// comment; only Clients is required.
type Options struct {
	// Clients makes the executor's Kafka clients. Required.
	Clients ClientFactory
	// Topics names the actions topic (read), the DLQ topic (written) and
	// the executed-effects ledger (Executed: compacted, partitioned like
	// the actions topic). Zero fields take schemas.DefaultTopics().
	Topics schemas.Topics
	// Group is the consumer group, and names the executor in the ledger.
	// Default DefaultGroup ("iotpipe-webhook").
	Group string
	// KafkaOptions are appended to the consumer's client options (group,
	// topic, read-committed isolation, manual commits).
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
	// response headers and the first bytes of the body; an attempt that
	// times out is retried like a network error. An action's "timeout"
	// param (seconds, at most 300) replaces it for that action.
	// Default 10s.
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

	// TargetConcurrency is the most requests in flight per target
	// (scheme://host:port). Default 16.
	TargetConcurrency int
	// RuleConcurrency is the most requests in flight per rule and target,
	// so a rule whose target hangs holds at most this many of the
	// target's slots. When the target's slots are all taken, a freed one
	// goes to the rule with the fewest in flight. A firing waiting for
	// its next attempt holds no slot. Default TargetConcurrency/2 (at
	// least 1).
	RuleConcurrency int
	// TargetQueue is the number of firings waiting per target (queued, or
	// waiting for their next attempt). When one target's queue is full,
	// reading the log pauses until it has room: size it for the longest
	// outage you want absorbed without slowing other targets (outage
	// seconds x that target's firings per second). Default 10000.
	TargetQueue int
	// MaxInFlight is the number of action records read but not yet done
	// (queued, being delivered, or waiting for their next attempt).
	// Reading pauses when it is reached. Default 50000.
	MaxInFlight int
	// CommitInterval is how often the ledger of executed firings is
	// written (and then the consumer group offsets committed), when
	// something was done. A crash sends again the firings in flight and
	// at most those done in the last interval. Default 100ms (a ledger
	// record is a few bytes per partition). The ledger is also written
	// when partitions are revoked and when Run returns.
	CommitInterval time.Duration
	// RecentKeys is how many keys of done firings each actions partition
	// remembers, to deliver once an action record repeated at a later
	// offset. Default 10000 (ledger.DefaultRecent).
	RecentKeys int
	// DrainTimeout bounds the wait for requests in flight when Run's
	// context ends and when partitions are revoked; past it they are
	// cut and sent again by the next owner. Default RequestTimeout + 5s.
	DrainTimeout time.Duration

	// Logger receives the executor's logs. Default slog.Default().
	Logger *slog.Logger
}

// withDefaults returns o with zero fields set to their defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Clients == nil {
		return o, errors.New("webhook executor: no Kafka client factory configured (set Options.Clients)")
	}
	topics := schemas.DefaultTopics()
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Topics.Actions, topics.Actions)
	def(&o.Topics.DLQ, topics.DLQ)
	def(&o.Topics.Executed, topics.Executed)
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
	defDur(&o.CommitInterval, 100*time.Millisecond)
	defDur(&o.DrainTimeout, o.RequestTimeout+5*time.Second)
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	defInt(&o.MaxAttempts, 20)
	defInt(&o.TargetConcurrency, 16)
	defInt(&o.RuleConcurrency, max(1, o.TargetConcurrency/2))
	defInt(&o.TargetQueue, 10000)
	defInt(&o.MaxInFlight, 50000)
	defInt(&o.RecentKeys, ledger.DefaultRecent)
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
