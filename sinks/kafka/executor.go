// Package kafka is the executor of the kafka action: a processor
// (Executor.Process) that the processor runtime runs over the actions
// topic, in the action executors' consumer group, producing the output of
// every firing of type "kafka" to the topic the action names:
//
//	kafka(topic => 'alerts', key => '${clientid()}', headers => {'source': 'iotpipe'})
//
// The record value is the rule's output as JSON (the action's payload,
// byte for byte), the key is Params.key (rendered by the rules
// processor; the action's thing when absent), Params.headers (an object
// of strings) become record headers, and the headers iot.action (the
// idempotency key) and iot.rule are added. The record is written in the
// batch's transaction with the executor's offset: exactly once for
// read-committed consumers, never again after a crash, a restart or a
// move. With Options.CreateTopic a target topic is created on first use;
// otherwise it must exist. An action that cannot be executed (no topic,
// a topic that does not exist and was not created, bad headers, a value
// over Options.MaxRecordBytes) goes to the DLQ with the reason (headers
// dlq.stage=kafka, dlq.reason, dlq.source): checked before it is
// produced, since a record the log refuses aborts its whole batch.
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
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas"
)

// Name is the processor's name (and the DLQ stage of what it refuses).
const Name = "kafka"

// Record headers added to every produced record.
const (
	HeaderAction = "iot.action"
	HeaderRule   = "iot.rule"
)

// DefaultMaxRecordBytes is the default of Options.MaxRecordBytes: the
// default max.message.bytes of a Kafka topic, less room for the batch.
const DefaultMaxRecordBytes = 1000000

// ClientFactory makes franz-go clients for the log (eventlog.Log does).
type ClientFactory interface {
	Client(opts ...kgo.Opt) (*kgo.Client, error)
}

// Options configure an Executor. Only Clients is required.
type Options struct {
	// Clients makes the client that checks target topics exist. Targets
	// are produced on the same cluster. Required.
	Clients ClientFactory
	// Topics names the actions (read) and DLQ (written) topics. Default
	// schemas.DefaultTopics().
	Topics schemas.Topics
	// CreateTopic, when set, is called before the first record to each
	// target topic (eventlog.Log.CreateTopic on the embedded log), so a
	// topic an action names is created on first use. Nil: a target
	// topic must exist; an action to one that does not goes to the DLQ.
	CreateTopic func(ctx context.Context, topic string) error
	// MaxRecordBytes is the largest key, value and headers an action
	// may produce; a larger one goes to the DLQ. Default
	// DefaultMaxRecordBytes.
	MaxRecordBytes int
	// Logger receives the executor's logs. Default slog.Default().
	Logger *slog.Logger
}

// Executor carries out kafka actions as a processor. It is safe for use
// by every partition task at once.
type Executor struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics

	mu sync.Mutex
	// known are the target topics that exist (made or found), missing
	// those found missing and when (asked again after missingTTL).
	known   map[string]bool
	missing map[string]time.Time
	cl      *kgo.Client // for metadata, made on first need
}

// missingTTL is how long a target topic found missing is taken as
// missing before the log is asked again.
const missingTTL = 10 * time.Second

// New checks opts and returns an Executor.
func New(opts Options) (*Executor, error) {
	o := opts
	if o.Clients == nil {
		return nil, errors.New("kafka action executor: no Kafka client factory (set Options.Clients)")
	}
	def := schemas.DefaultTopics()
	if o.Topics.Actions == "" {
		o.Topics.Actions = def.Actions
	}
	if o.Topics.DLQ == "" {
		o.Topics.DLQ = def.DLQ
	}
	if o.MaxRecordBytes <= 0 {
		o.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Executor{opts: o, log: o.Logger.With("component", "kafka-actions"), metrics: newMetrics(),
		known: map[string]bool{}, missing: map[string]time.Time{}}, nil
}

// Close releases the metadata client.
func (e *Executor) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cl != nil {
		e.cl.Close()
		e.cl = nil
	}
	return nil
}

// Name implements processors.Processor.
func (e *Executor) Name() string { return Name }

// Process implements processors.Processor: a kafka action's record, or
// its dead letter; other action types are not this executor's.
func (e *Executor) Process(ctx context.Context, tx *processors.Tx, ev *processors.Event) error {
	r := &kgo.Record{Topic: e.opts.Topics.Actions, Partition: ev.Partition, Offset: ev.Offset,
		Key: []byte(ev.Thing), Value: ev.Payload, Headers: ev.Headers}
	out := e.translate(r)
	if out == nil {
		return nil
	}
	if out.Topic != e.opts.Topics.DLQ {
		if err := e.ensureTopic(ctx, out.Topic); err != nil {
			out = e.deadLetter(r, fmt.Errorf("kafka action %s: %w", out.Topic, err))
		} else if !tx.DryRun() {
			e.metrics.produced.Inc()
		}
	}
	tx.Emit(out)
	return nil
}

// createTimeout bounds one CreateTopic call or metadata request.
const createTimeout = 10 * time.Second

// ensureTopic makes sure topic exists: Options.CreateTopic makes it on
// the embedded log; otherwise the log is asked (a topic found missing is
// asked about again after missingTTL).
func (e *Executor) ensureTopic(ctx context.Context, topic string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.known[topic] {
		return nil
	}
	if at, ok := e.missing[topic]; ok && time.Since(at) < missingTTL {
		return fmt.Errorf("topic %s does not exist", topic)
	}
	ctx, cancel := context.WithTimeout(ctx, createTimeout)
	defer cancel()
	if e.opts.CreateTopic != nil {
		if err := e.opts.CreateTopic(ctx, topic); err != nil {
			e.missing[topic] = time.Now()
			e.log.Warn("create the target topic of a kafka action", "topic", topic, "err", err)
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
		e.known[topic] = true
		e.log.Info("target topic ready", "topic", topic)
		return nil
	}
	if e.cl == nil {
		cl, err := e.opts.Clients.Client()
		if err != nil {
			return err
		}
		e.cl = cl
	}
	td, err := kadm.NewClient(e.cl).ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("look up topic %s: %w", topic, err)
	}
	if d, ok := td[topic]; !ok || d.Err != nil {
		e.missing[topic] = time.Now()
		return fmt.Errorf("topic %s does not exist (create it, or run iotpipe rules check --kafka to list what is missing)", topic)
	}
	e.known[topic] = true
	return nil
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
	if n := recordBytes(out); n > e.opts.MaxRecordBytes {
		return e.deadLetter(r, fmt.Errorf("kafka action %s: the record is %d bytes, over %d", key, n, e.opts.MaxRecordBytes))
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

// recordBytes is the size of r's key, value and headers.
func recordBytes(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// deadLetter is the DLQ record of an action that cannot be executed.
func (e *Executor) deadLetter(r *kgo.Record, err error) *kgo.Record {
	e.log.Warn("action to dlq", "key", string(r.Key), "err", err)
	e.metrics.deadLettered.Inc()
	return schemas.DeadLetter(e.opts.Topics.DLQ, r, Name, err)
}

type metrics struct {
	produced, deadLettered prometheus.Counter
}

func newMetrics() *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	return &metrics{
		produced:     c("iotpipe_kafka_actions_produced_total", "Kafka action records written to their target topic (in a batch's transaction)."),
		deadLettered: c("iotpipe_kafka_actions_dead_lettered_total", "Kafka actions sent to the DLQ."),
	}
}

// Collectors returns the executor's Prometheus collectors.
func (e *Executor) Collectors() []prometheus.Collector {
	return []prometheus.Collector{e.metrics.produced, e.metrics.deadLettered}
}
