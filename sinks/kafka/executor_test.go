package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas"
)

var topics = schemas.DefaultTopics()

// consume reads the committed records of topic until it has n.
func consume(t *testing.T, l *eventlog.Log, topic string, n int) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out = out[:0]
		err := eventlog.ReadToEnd(context.Background(), l.Client, topic, func(r *kgo.Record) error { // err: the topic may not exist yet
			out = append(out, r)
			return nil
		})
		if err == nil && len(out) >= n || time.Now().After(deadline) {
			break
		}
	}
	if len(out) != n {
		t.Fatalf("%s: %d records, want %d", topic, len(out), n)
	}
	return out
}

// run runs e as the action executors run, on the processor runtime over
// the actions topic, until the returned function is called.
func run(t *testing.T, l *eventlog.Log, e *Executor) func() {
	t.Helper()
	topics := l.Topics()
	topics.Changelog = topics.ActionsChangelog
	r, err := processors.NewRunner(l, []processors.Processor{e}, processors.RunnerOptions{
		Topics: topics, Input: topics.Actions, Group: "test-actions", StateDir: t.TempDir(), Logger: logtest.Quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		r.Close()
		e.Close()
	}
}

func header(r *kgo.Record, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

func TestKafkaAction(t *testing.T) {
	l := logtest.Open(t, 2)
	cl, err := l.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 2, -1, nil, "alerts"); err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i, a := range []schemas.Action{
		{Key: "0/1/hot/0", Rule: "hot", Type: "kafka", Thing: "dev-1",
			Params:  map[string]any{"topic": "alerts", "key": "k-dev-1", "headers": map[string]any{"source": "iotpipe", "n": 2}},
			Payload: map[string]any{"temp": 41.5}},
		{Key: "0/2/hot/1", Rule: "hot", Type: "webhook", Params: map[string]any{"url": "http://x"}},
		{Key: "1/3/hot/0", Rule: "hot", Type: "kafka", Thing: "dev-2", Params: map[string]any{"topic": "alerts"}, Payload: []int{1, 2}},
		{Key: "1/4/hot/0", Rule: "hot", Type: "kafka", Params: map[string]any{"topic": "no-such-topic"}, Payload: 1},
		{Key: "1/5/hot/0", Rule: "hot", Type: "kafka", Params: map[string]any{}},
		{Key: "1/6/hot/0", Rule: "hot", Type: "kafka", Params: map[string]any{"topic": "alerts"}, Payload: strings.Repeat("x", 2000)},
	} {
		v, _ := json.Marshal(a)
		recs = append(recs, &kgo.Record{Topic: topics.Actions, Partition: int32(i / 2 % 2), Key: []byte(a.Key), Value: v})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{Clients: l, MaxRecordBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, l, e)
	defer stop()

	out := consume(t, l, "alerts", 2)
	byKey := map[string]*kgo.Record{}
	for _, r := range out {
		byKey[header(r, HeaderAction)] = r
	}
	a := byKey["0/1/hot/0"]
	if a == nil || string(a.Key) != "k-dev-1" || string(a.Value) != `{"temp":41.5}` ||
		header(a, "source") != "iotpipe" || header(a, "n") != "2" || header(a, HeaderRule) != "hot" {
		t.Errorf("first record = %+v", a)
	}
	if b := byKey["1/3/hot/0"]; b == nil || string(b.Key) != "dev-2" || string(b.Value) != `[1,2]` {
		t.Errorf("second record = %+v", b)
	}
	dlq := consume(t, l, topics.DLQ, 3)
	reasons := map[string]string{}
	for _, r := range dlq {
		reasons[string(r.Key)] = header(r, "dlq.reason")
	}
	if !strings.Contains(reasons["1/4/hot/0"], "no-such-topic does not exist") || !strings.Contains(reasons["1/5/hot/0"], "not a Kafka topic name") ||
		!strings.Contains(reasons["1/6/hot/0"], "bytes, over") {
		t.Errorf("dlq reasons = %v", reasons)
	}
}

func TestRecordFromAction(t *testing.T) {
	tests := []struct {
		name    string
		params  map[string]any
		wantErr string
	}{
		{"ok", map[string]any{"topic": "t"}, ""},
		{"no topic", map[string]any{}, "not a Kafka topic name"},
		{"bad key", map[string]any{"topic": "t", "key": json.Number("1")}, `"key" is a`},
		{"bad headers", map[string]any{"topic": "t", "headers": "x"}, `"headers" is a`},
		{"bad header value", map[string]any{"topic": "t", "headers": map[string]any{"h": []any{}}}, `header "h"`},
	}
	for _, tt := range tests {
		_, err := record(&wireAction{Action: schemas.Action{Params: tt.params}}, "k")
		if (err == nil) != (tt.wantErr == "") || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
}

// With CreateTopic (the embedded log's), an action to a topic that does
// not exist creates it on first use: the records land there, none goes
// to the DLQ. Before, every firing went to the DLQ with
// UNKNOWN_TOPIC_OR_PARTITION.
func TestKafkaActionCreatesTargetTopic(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lg, err := eventlog.Open(ctx, eventlog.Options{DataDir: t.TempDir(), Port: -1, Partitions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	cl, err := lg.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range 4 {
		a := schemas.Action{Key: fmt.Sprintf("0/%d/hot/0", i), Rule: "hot", Type: "kafka", Thing: "dev-1",
			Params: map[string]any{"topic": "alerts-new"}, Payload: map[string]any{"i": i}}
		v, _ := json.Marshal(a)
		recs = append(recs, &kgo.Record{Topic: topics.Actions, Key: []byte(a.Key), Value: v})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{Clients: lg, CreateTopic: lg.CreateTopic})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, lg, e)
	defer stop()
	out := consume(t, lg, "alerts-new", 4)
	if len(out) != 4 {
		t.Errorf("alerts-new has %d records, want 4", len(out))
	}
	td, err := kadm.NewClient(cl).ListTopics(ctx, "alerts-new")
	if err != nil || len(td["alerts-new"].Partitions) != 2 {
		t.Errorf("alerts-new: %+v, %v (want the log's 2 partitions)", td["alerts-new"], err)
	}
	var m dto.Metric
	if err := e.metrics.deadLettered.Write(&m); err != nil || m.GetCounter().GetValue() != 0 {
		t.Errorf("%v actions dead-lettered (%v), want 0", m.GetCounter().GetValue(), err)
	}
}
