// Package kafka is the executor of the kafka action: a consumer group
// (iotpipe-kafka-actions by default) over the actions topic that
// produces the output of every firing of type "kafka" to the topic the
// action names:
//
//	kafka(topic => 'alerts', key => '${clientid()}', headers => {'source': 'iotpipe'})
//
// The record value is the rule's output as JSON (the action's payload,
// byte for byte), the key is Params.key (rendered by the rules
// processor; the action's thing when absent), Params.headers (an object
// of strings) become record headers, and the headers iot.action (the
// idempotency key) and iot.rule are added so duplicates are
// recognisable. Offsets are committed only after the produced records
// were acknowledged (at least once). With Options.CreateTopic a target
// topic is created on first use. An action that cannot be executed (no
// topic, a topic that does not exist and was not created, bad headers)
// goes to the DLQ with the reason (headers dlq.stage=kafka, dlq.reason,
// dlq.source).
package kafka

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/iotpipe/iotpipe/sinks/relay"
)

// DefaultGroup is the consumer group of the kafka action executor.
const DefaultGroup = "iotpipe-kafka-actions"

// Record headers added to every produced record.
const (
	HeaderAction = "iot.action"
	HeaderRule   = "iot.rule"
)

// Options configure an Executor. Only Brokers is required.
type Options struct {
	// Brokers are the Kafka seed brokers of the actions topic ("host:port").
	// Required. Targets are produced on the same cluster.
	Brokers []string
	// Topics names the actions (read) and DLQ (written) topics. Default
	// schemas.DefaultTopics().
	Topics schemas.Topics
	// Group is the consumer group. Default DefaultGroup.
	Group string
	// KafkaOptions are appended to the client options the executor sets.
	KafkaOptions []kgo.Opt
	// RetryBackoff is the wait before producing again after the log
	// refused records. Default 500ms.
	RetryBackoff time.Duration
	// CreateTopic, when set, is called before the first record to each
	// target topic (eventlog.Log.CreateTopic on the embedded log), so a
	// topic an action names is created on first use. Nil: a target
	// topic must exist; an action to one that does not goes to the DLQ.
	CreateTopic func(ctx context.Context, topic string) error
	// Logger receives the executor's logs. Default slog.Default().
	Logger *slog.Logger
}

// Executor carries out kafka actions. New, Start, Run, Close.
type Executor struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics

	mu sync.Mutex
	cl *kgo.Client
	// created are the target topics CreateTopic made or found (Run's
	// goroutine only).
	created map[string]bool
}

// New checks opts and returns an Executor that is not yet started.
func New(opts Options) (*Executor, error) {
	o := opts
	if len(o.Brokers) == 0 {
		return nil, errors.New("kafka action executor: no Kafka brokers configured (set Options.Brokers)")
	}
	def := schemas.DefaultTopics()
	if o.Topics.Actions == "" {
		o.Topics.Actions = def.Actions
	}
	if o.Topics.DLQ == "" {
		o.Topics.DLQ = def.DLQ
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 500 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Executor{opts: o, log: o.Logger.With("component", "kafka-actions"), metrics: newMetrics(), created: map[string]bool{}}, nil
}

// Start joins the consumer group; it returns once the brokers answered.
func (e *Executor) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cl != nil {
		return errors.New("kafka action executor: Start called twice")
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(e.opts.Brokers...),
		kgo.ConsumerGroup(e.opts.Group),
		kgo.ConsumeTopics(e.opts.Topics.Actions),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.UnknownTopicRetries(2),
	}, e.opts.KafkaOptions...)...)
	if err != nil {
		return fmt.Errorf("kafka action executor: create Kafka client: %w", err)
	}
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return fmt.Errorf("kafka action executor: reach Kafka brokers %v: %w", e.opts.Brokers, err)
	}
	e.cl = cl
	e.log.Info("kafka action executor started", "topic", e.opts.Topics.Actions, "group", e.opts.Group)
	return nil
}

// Close leaves the group and closes the client.
func (e *Executor) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cl != nil {
		e.cl.Close()
	}
	return nil
}

// Run executes actions until ctx ends (then it returns nil); records
// read but not acknowledged are not committed and run again later.
func (e *Executor) Run(ctx context.Context) error {
	e.mu.Lock()
	cl := e.cl
	e.mu.Unlock()
	if cl == nil {
		return errors.New("kafka action executor: Run before Start")
	}
	relay.Run(ctx, cl, relay.Options{
		Logger:       e.log,
		RetryBackoff: e.opts.RetryBackoff,
		OnProduced: func(acked []*kgo.Record) {
			for _, r := range acked {
				if r.Topic != e.opts.Topics.DLQ {
					e.metrics.produced.Inc()
				}
			}
		},
		OnRefused: func(refused []kgo.ProduceResult) {
			for _, res := range refused {
				e.metrics.retries.Inc()
				e.log.Warn("produce refused; retrying", "topic", res.Record.Topic, "err", res.Err)
			}
		},
		DeadLetter: e.deadLetter,
	}, e.translateAll)
	return nil
}

// translateAll translates one poll; every output keeps its action record
// as Source, so an output whose topic does not exist is dead-lettered.
func (e *Executor) translateAll(recs []*kgo.Record) ([]relay.Output, func()) {
	var out []relay.Output
	for _, r := range recs {
		if o := e.translate(r); o != nil {
			e.ensureTopic(o.Topic)
			out = append(out, relay.Output{Record: o, Source: r})
		}
	}
	return out, nil
}

// createTimeout bounds one CreateTopic call.
const createTimeout = 10 * time.Second

// ensureTopic has Options.CreateTopic make topic before its first
// record; a failure is logged and tried again on the next poll (the
// record goes to the DLQ if the topic is still missing).
func (e *Executor) ensureTopic(topic string) {
	if e.opts.CreateTopic == nil || e.created[topic] || topic == e.opts.Topics.DLQ {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), createTimeout)
	defer cancel()
	if err := e.opts.CreateTopic(ctx, topic); err != nil {
		e.log.Warn("create the target topic of a kafka action", "topic", topic, "err", err)
		return
	}
	e.created[topic] = true
	e.log.Info("target topic ready", "topic", topic)
}

// wireAction is schemas.Action with the payload kept as raw JSON.
type wireAction struct {
	schemas.Action
	Payload json.RawMessage `json:"payload"`
}

// translate returns the record to produce for a kafka action, a DLQ
// record for an invalid one, nil for other action types.
func (e *Executor) translate(r *kgo.Record) *kgo.Record {
	var a wireAction
	dec := json.NewDecoder(bytes.NewReader(r.Value))
	dec.UseNumber()
	if err := dec.Decode(&a); err != nil {
		return e.deadLetter(r, fmt.Errorf("decode action record: %w", err))
	}
	if a.Type != "kafka" {
		return nil
	}
	key := a.Key
	if key == "" {
		key = string(r.Key)
	}
	out, err := record(&a, key)
	if err != nil {
		return e.deadLetter(r, fmt.Errorf("kafka action %s: %w", key, err))
	}
	if out.Topic == e.opts.Topics.Actions {
		return e.deadLetter(r, fmt.Errorf("kafka action %s: target is the actions topic itself", key))
	}
	return out
}

// record builds the record a kafka action produces.
func record(a *wireAction, key string) (*kgo.Record, error) {
	topic, _ := a.Params["topic"].(string)
	if topic == "" || strings.ContainsAny(topic, "/\\ ,") || len(topic) > 249 {
		return nil, fmt.Errorf(`params "topic" %q is not a Kafka topic name`, topic)
	}
	rk := a.Thing
	if k, ok := a.Params["key"]; ok {
		s, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf(`params "key" is a %T, want a string`, k)
		}
		rk = s
	}
	value := []byte(a.Payload)
	if len(value) == 0 {
		value = []byte("null")
	}
	out := &kgo.Record{Topic: topic, Key: []byte(rk), Value: value}
	if h, ok := a.Params["headers"]; ok && h != nil {
		m, ok := h.(map[string]any)
		if !ok {
			return nil, fmt.Errorf(`params "headers" is a %T, want an object`, h)
		}
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			var v string
			switch t := m[k].(type) {
			case string:
				v = t
			case json.Number:
				v = t.String()
			case bool:
				v = fmt.Sprint(t)
			default:
				return nil, fmt.Errorf("header %q is a %T, want a string", k, t)
			}
			out.Headers = append(out.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
	}
	out.Headers = append(out.Headers,
		kgo.RecordHeader{Key: HeaderAction, Value: []byte(key)},
		kgo.RecordHeader{Key: HeaderRule, Value: []byte(a.Rule)})
	return out, nil
}

// deadLetter is the DLQ record of an action that cannot be executed.
func (e *Executor) deadLetter(r *kgo.Record, err error) *kgo.Record {
	e.log.Warn("action to dlq", "key", string(r.Key), "err", err)
	e.metrics.deadLettered.Inc()
	return schemas.DeadLetter(e.opts.Topics.DLQ, r, "kafka", err)
}

type metrics struct {
	produced, retries, deadLettered prometheus.Counter
}

func newMetrics() *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	return &metrics{
		produced:     c("iotpipe_kafka_actions_produced_total", "Kafka action records acknowledged by their target topic."),
		retries:      c("iotpipe_kafka_actions_retries_total", "Kafka action records produced again after a refusal."),
		deadLettered: c("iotpipe_kafka_actions_dead_lettered_total", "Kafka actions sent to the DLQ."),
	}
}

// Collectors returns the executor's Prometheus collectors.
func (e *Executor) Collectors() []prometheus.Collector {
	return []prometheus.Collector{e.metrics.produced, e.metrics.retries, e.metrics.deadLettered}
}
