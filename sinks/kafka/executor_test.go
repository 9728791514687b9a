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
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/schemas"
)

var topics = schemas.DefaultTopics()

func consume(t *testing.T, addrs []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: %d records, want %d", topic, len(out), n)
		}
		out = append(out, fs.Records()...)
	}
	return out
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
	c, err := kfake.NewCluster(kfake.SeedTopics(2, topics.Actions, topics.DLQ, "alerts"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addrs := c.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i, a := range []schemas.Action{
		{Key: "0/1/hot/0", Rule: "hot", Type: "kafka", Thing: "dev-1",
			Params:  map[string]any{"topic": "alerts", "key": "k-dev-1", "headers": map[string]any{"source": "iotpipe", "n": 2}},
			Payload: map[string]any{"temp": 41.5}},
		{Key: "0/2/hot/1", Rule: "hot", Type: "webhook", Params: map[string]any{"url": "http://x"}},
		{Key: "1/3/hot/0", Rule: "hot", Type: "kafka", Thing: "dev-2", Params: map[string]any{"topic": "alerts"}, Payload: []int{1, 2}},
		{Key: "1/4/hot/0", Rule: "hot", Type: "kafka", Params: map[string]any{"topic": "no-such-topic"}, Payload: 1},
		{Key: "1/5/hot/0", Rule: "hot", Type: "kafka", Params: map[string]any{}},
	} {
		v, _ := json.Marshal(a)
		recs = append(recs, &kgo.Record{Topic: topics.Actions, Partition: int32(i / 2 % 2), Key: []byte(a.Key), Value: v})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e, err := New(Options{Brokers: addrs, RetryBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()

	out := consume(t, addrs, "alerts", 2)
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
	dlq := consume(t, addrs, topics.DLQ, 2)
	reasons := map[string]string{}
	for _, r := range dlq {
		reasons[string(r.Key)] = header(r, "dlq.reason")
	}
	if !strings.Contains(reasons["1/4/hot/0"], "no-such-topic") || !strings.Contains(reasons["1/5/hot/0"], "not a Kafka topic name") {
		t.Errorf("dlq reasons = %v", reasons)
	}
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(10 * time.Second)
	for {
		offs, err := adm.FetchOffsets(context.Background(), DefaultGroup)
		o0, _ := offs.Lookup(topics.Actions, 0)
		o1, _ := offs.Lookup(topics.Actions, 1)
		if err == nil && o0.At == 3 && o1.At == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offsets not committed: %v %v", offs, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
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
	e, err := New(Options{Brokers: lg.Brokers(), RetryBackoff: 10 * time.Millisecond, CreateTopic: lg.CreateTopic})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	done := make(chan error)
	go func() { done <- e.Run(ctx) }()
	out := consume(t, lg.Brokers(), "alerts-new", 4)
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
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
