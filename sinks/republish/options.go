package republish

import (
	"errors"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
)

// DefaultGroup is the consumer group of the republish executor.
const DefaultGroup = "iotpipe-republish"

// DefaultCommandTopic is the topic template of commands without a topic
// param: {thing} and {id} are replaced.
const DefaultCommandTopic = "cmd/{thing}/{id}"

// Options configure an Executor. Only Brokers is required.
type Options struct {
	// Brokers are the Kafka seed brokers ("host:port"). Required.
	Brokers []string
	// Topics names the actions (read), outbound (written), events (read
	// for command replies) and DLQ (written) topics. Default
	// schemas.DefaultTopics().
	Topics schemas.Topics
	// Group is the consumer group. Default DefaultGroup.
	Group string
	// KafkaOptions are appended to the client options the executor sets,
	// e.g. for TLS or SASL.
	KafkaOptions []kgo.Opt
	// CommandTopic is the topic template of commands without a topic
	// param. Default DefaultCommandTopic. Replies always go to
	// cmd/{thing}/{id}/reply.
	CommandTopic string
	// StatusWindow is how far back command status is rebuilt on Start
	// and how long it is kept. Default 24h.
	StatusWindow time.Duration
	// RetryBackoff is the wait before producing again after the log
	// refused outbound records. Default 500ms.
	RetryBackoff time.Duration
	// Logger receives the executor's logs. Default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if len(o.Brokers) == 0 {
		return o, errors.New("republish executor: no Kafka brokers configured (set Options.Brokers)")
	}
	def := schemas.DefaultTopics()
	set := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	set(&o.Topics.Actions, def.Actions)
	set(&o.Topics.Outbound, def.Outbound)
	set(&o.Topics.Events, def.Events)
	set(&o.Topics.DLQ, def.DLQ)
	set(&o.Group, DefaultGroup)
	set(&o.CommandTopic, DefaultCommandTopic)
	if o.StatusWindow <= 0 {
		o.StatusWindow = 24 * time.Hour
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 500 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}
