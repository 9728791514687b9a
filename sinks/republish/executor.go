package republish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/iotpipe/iotpipe/sinks/relay"
)

// Executor carries out the republish and command actions. Create it
// with New, then Start, Run and Close it.
type Executor struct {
	opts    Options
	log     *slog.Logger
	status  *statuses
	metrics *metrics

	mu      sync.Mutex
	cl      *kgo.Client // consumer group on actions; produces outbound
	tracker *kgo.Client // group-less reader of actions, outbound, events
}

// New checks opts and returns an Executor that is not yet started.
func New(opts Options) (*Executor, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Executor{opts: o, log: o.Logger.With("component", "republish"), status: newStatuses(), metrics: newMetrics()}, nil
}

// Start connects to the brokers: the consumer group client and the
// status tracker, which reads from StatusWindow ago. It returns once the
// brokers answered.
func (e *Executor) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cl != nil {
		return errors.New("republish executor: Start called twice")
	}
	o := e.opts
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.ConsumerGroup(o.Group),
		kgo.ConsumeTopics(o.Topics.Actions),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	}, o.KafkaOptions...)...)
	if err != nil {
		return fmt.Errorf("republish executor: create Kafka client: %w", err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return fmt.Errorf("republish executor: reach Kafka brokers %v: %w", o.Brokers, err)
	}
	from := time.Now().Add(-o.StatusWindow).UnixMilli()
	tr, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(o.Brokers...),
		kgo.ConsumeTopics(o.Topics.Actions, o.Topics.Outbound, o.Topics.Events),
		kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(from)),
	}, o.KafkaOptions...)...)
	if err != nil {
		cl.Close()
		return fmt.Errorf("republish executor: create status client: %w", err)
	}
	e.cl, e.tracker = cl, tr
	e.log.Info("republish executor started", "topic", o.Topics.Actions, "group", o.Group, "outbound", o.Topics.Outbound)
	return nil
}

// Run executes actions and follows command status until ctx ends. It
// returns nil when ctx ends; records read but not yet acknowledged are
// not committed and are executed again after a restart.
func (e *Executor) Run(ctx context.Context) error {
	e.mu.Lock()
	cl, tr := e.cl, e.tracker
	e.mu.Unlock()
	if cl == nil {
		return errors.New("republish executor: Run before Start")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.track(ctx, tr)
	}()
	e.consume(ctx, cl)
	wg.Wait()
	return nil
}

// Close leaves the group and closes the clients.
func (e *Executor) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cl != nil {
		e.cl.Close()
		e.tracker.Close()
	}
	return nil
}

// consume relays the actions of the consumer group to the outbound
// topic until ctx ends; what was not acknowledged by then is not
// committed and is executed again later. Commands are pending once
// translated and delivered once their outbound records were
// acknowledged.
func (e *Executor) consume(ctx context.Context, cl *kgo.Client) {
	relay.Run(ctx, cl, relay.Options{
		Logger:       e.log,
		RetryBackoff: e.opts.RetryBackoff,
		OnProduced:   func(acked []*kgo.Record) { e.metrics.produced.Add(float64(len(acked))) },
		OnRefused: func(refused []kgo.ProduceResult) {
			e.metrics.retries.Add(float64(len(refused)))
			e.log.Warn("outbound records refused; retrying", "records", len(refused))
		},
	}, e.translateAll)
}

// translateAll translates one poll and marks its commands pending; the
// returned func marks them delivered.
func (e *Executor) translateAll(recs []*kgo.Record) ([]relay.Output, func()) {
	var out []relay.Output
	var cmds []*command
	for _, r := range recs {
		o, cmd := e.translate(r)
		if o != nil {
			out = append(out, relay.Output{Record: o, Source: r})
		}
		if cmd != nil {
			cmds = append(cmds, cmd)
			e.status.pending(cmd)
		}
	}
	return out, func() {
		now := time.Now()
		for _, c := range cmds {
			e.status.delivered(c.id, now)
		}
	}
}

// translate turns one action record into its outbound record (nil for
// other action types), or a DLQ record when the action is invalid.
func (e *Executor) translate(r *kgo.Record) (*kgo.Record, *command) {
	a, err := decodeAction(r.Value)
	if err != nil {
		return e.deadLetter(r, err), nil
	}
	if a.Type != TypeRepublish && a.Type != TypeCommand {
		return nil, nil
	}
	key := actionKey(a, r)
	var out *schemas.Outbound
	var cmd *command
	if a.Type == TypeRepublish {
		out, err = republish(a, key)
	} else if cmd, err = newCommand(a, key, e.opts.CommandTopic); err == nil {
		out = cmd.out
	}
	if err != nil {
		e.metrics.invalid.WithLabelValues(a.Type).Inc()
		return e.deadLetter(r, fmt.Errorf("%s action %s: %w", a.Type, key, err)), nil
	}
	rec := out.Record(e.opts.Topics.Outbound)
	rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderAction, Value: []byte(key)})
	if cmd != nil {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: HeaderCommand, Value: []byte(key)})
	}
	e.metrics.actions.WithLabelValues(a.Type).Inc()
	return rec, cmd
}

// deadLetter is the DLQ record of an action that cannot be executed.
func (e *Executor) deadLetter(r *kgo.Record, err error) *kgo.Record {
	e.log.Warn("action to dlq", "key", string(r.Key), "err", err)
	e.metrics.deadLettered.Inc()
	return schemas.DeadLetter(e.opts.Topics.DLQ, r, "republish", err)
}

// track follows the actions, outbound and events topics and keeps the
// command status table.
func (e *Executor) track(ctx context.Context, tr *kgo.Client) {
	o := e.opts
	lastExpiry := time.Now()
	for {
		fs := tr.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			return
		}
		fs.EachRecord(func(r *kgo.Record) {
			switch r.Topic {
			case o.Topics.Actions:
				a, err := decodeAction(r.Value)
				if err != nil || a.Type != TypeCommand {
					return
				}
				if cmd, err := newCommand(a, actionKey(a, r), o.CommandTopic); err == nil {
					e.status.pending(cmd)
				}
			case o.Topics.Outbound:
				for _, h := range r.Headers {
					if h.Key == HeaderCommand {
						e.status.delivered(string(h.Value), r.Timestamp)
					}
				}
			case o.Topics.Events:
				env, err := schemas.DecodeEnvelope(r.Headers)
				if err != nil || env.Type != schemas.EventPublish {
					return
				}
				if thing, id, ok := parseReply(env.Topic); ok {
					e.status.acknowledged(id, thing, time.Unix(0, env.ReceivedAt), r.Value)
					e.metrics.replies.Inc()
				}
			}
		})
		if time.Since(lastExpiry) > time.Minute {
			e.status.expire(time.Now().Add(-o.StatusWindow))
			lastExpiry = time.Now()
		}
	}
}

type metrics struct {
	actions, invalid                         *prometheus.CounterVec
	produced, retries, deadLettered, replies prometheus.Counter
}

func newMetrics() *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	return &metrics{
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_republish_actions_total", Help: "Actions turned into outbound messages, by type (republish, command).",
		}, []string{"type"}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_republish_invalid_total", Help: "Actions that could not be executed (sent to the DLQ), by type.",
		}, []string{"type"}),
		produced:     c("iotpipe_republish_outbound_total", "Outbound and DLQ records acknowledged by the log."),
		retries:      c("iotpipe_republish_produce_retries_total", "Records produced again after the log refused them."),
		deadLettered: c("iotpipe_republish_dead_lettered_total", "Action records sent to the DLQ."),
		replies:      c("iotpipe_republish_command_replies_total", "Command replies received from devices."),
	}
}

// Collectors returns the executor's Prometheus collectors.
func (e *Executor) Collectors() []prometheus.Collector {
	m := e.metrics
	return []prometheus.Collector{m.actions, m.invalid, m.produced, m.retries, m.deadLettered, m.replies}
}
