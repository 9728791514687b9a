package republish

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas"
)

// Executor carries out the republish and command actions: its Processor
// runs on the processor runtime over the actions topic (every outbound
// record it writes is in the batch's transaction: exactly once, never
// repeated after a crash, a restart or a move), and Run keeps the
// command status table. Create it with New.
type Executor struct {
	opts    Options
	log     *slog.Logger
	status  *statuses
	metrics *metrics
}

// New checks opts and returns an Executor.
func New(opts Options) (*Executor, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Executor{opts: o, log: o.Logger.With("component", "republish"), status: newStatuses(), metrics: newMetrics()}, nil
}

// Name implements processors.Processor.
func (e *Executor) Name() string { return Name }

// Name is the processor's name (and the DLQ stage of what it refuses).
const Name = "republish"

// Process implements processors.Processor: an action record of type
// republish or command becomes its outbound record (a command is
// pending until that record is on the log); an invalid one goes to the
// DLQ; other action types are not this executor's.
func (e *Executor) Process(_ context.Context, tx *processors.Tx, ev *processors.Event) error {
	r := &kgo.Record{Topic: e.opts.Topics.Actions, Partition: ev.Partition, Offset: ev.Offset,
		Key: []byte(ev.Thing), Value: ev.Payload, Headers: ev.Headers}
	out, cmd := e.translate(r)
	if out == nil {
		return nil
	}
	tx.Emit(out)
	if cmd != nil && !tx.DryRun() {
		e.status.pending(cmd)
	}
	return nil
}

// Run follows the actions, outbound, deliveries and replies topics from
// Options.StatusWindow ago and keeps the command status table, until ctx
// ends. It never reads the events topic: the processors copy the
// command replies among the events to the replies topic
// (processors/replies).
func (e *Executor) Run(ctx context.Context) error {
	o := e.opts
	from := time.Now().Add(-o.StatusWindow).UnixMilli()
	tr, err := o.Clients.Client(
		kgo.ConsumeTopics(o.Topics.Actions, o.Topics.Outbound, o.Topics.Deliveries, o.Topics.Replies),
		kgo.ConsumeResetOffset(kgo.NewOffset().AfterMilli(from)),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	if err != nil {
		return fmt.Errorf("republish executor: status client: %w", err)
	}
	defer tr.Close()
	e.log.Info("command status tracker started", "window", o.StatusWindow)
	e.track(ctx, tr)
	return nil
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
	return schemas.DeadLetter(e.opts.Topics.DLQ, r, Name, err)
}

// track follows the actions, outbound, deliveries and replies topics
// and keeps the command status table.
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
						e.status.sent(string(h.Value), r.Timestamp)
					}
				}
			case o.Topics.Deliveries:
				if d, err := schemas.DecodeDelivery(r); err == nil {
					e.status.reported(d)
				}
			case o.Topics.Replies:
				// A reply event as it is on the events topic.
				env, err := schemas.DecodeEnvelope(r.Headers)
				if err != nil || env.Type != schemas.EventPublish {
					return
				}
				if thing, id, ok := schemas.ParseReply(env.Topic); ok {
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
	actions, invalid      *prometheus.CounterVec
	deadLettered, replies prometheus.Counter
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
		deadLettered: c("iotpipe_republish_dead_lettered_total", "Action records sent to the DLQ."),
		replies:      c("iotpipe_republish_command_replies_total", "Command replies received from devices."),
	}
}

// Collectors returns the executor's Prometheus collectors.
func (e *Executor) Collectors() []prometheus.Collector {
	m := e.metrics
	return []prometheus.Collector{m.actions, m.invalid, m.deadLettered, m.replies}
}
