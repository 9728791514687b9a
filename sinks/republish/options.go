package republish

import (
	"errors"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
)

// DefaultCommandTopic is the topic template of commands without a topic
// param: {thing} and {id} are replaced.
const DefaultCommandTopic = "cmd/{thing}/{id}"

// ClientFactory makes franz-go clients for the log (eventlog.Log does).
type ClientFactory interface {
	Client(opts ...kgo.Opt) (*kgo.Client, error)
}

// Options configure an Executor. Only Clients is required.
type Options struct {
	// Clients makes the status tracker's Kafka client. Required.
	Clients ClientFactory
	// Topics names the actions (read), outbound (written and read),
	// deliveries and replies (read for the command status) and DLQ
	// (written) topics. Default schemas.DefaultTopics().
	Topics schemas.Topics
	// CommandTopic is the topic template of commands without a topic
	// param. Default DefaultCommandTopic. Replies always go to
	// cmd/{thing}/{id}/reply.
	CommandTopic string
	// StatusWindow is how far back command status is rebuilt when Run
	// starts and how long it is kept. Default 24h.
	StatusWindow time.Duration
	// Logger receives the executor's logs. Default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() (Options, error) {
	if o.Clients == nil {
		return o, errors.New("republish executor: no Kafka client factory (set Options.Clients)")
	}
	def := schemas.DefaultTopics()
	set := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	set(&o.Topics.Actions, def.Actions)
	set(&o.Topics.Outbound, def.Outbound)
	set(&o.Topics.DLQ, def.DLQ)
	set(&o.Topics.Deliveries, def.Deliveries)
	set(&o.Topics.Replies, def.Replies)
	set(&o.CommandTopic, DefaultCommandTopic)
	if o.StatusWindow <= 0 {
		o.StatusWindow = 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}
