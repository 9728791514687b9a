package republish

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/replies"
	"github.com/iotpipe/iotpipe/schemas"
)

var topics = schemas.DefaultTopics()

type broker struct {
	l  *eventlog.Log
	cl *kgo.Client
}

func newBroker(t *testing.T) *broker {
	t.Helper()
	l := logtest.Open(t, 2)
	cl, err := l.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &broker{l: l, cl: cl}
}

func (b *broker) produce(t *testing.T, recs ...*kgo.Record) {
	t.Helper()
	if err := b.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func actionRecord(t *testing.T, partition int32, a schemas.Action) *kgo.Record {
	t.Helper()
	v, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: topics.Actions, Partition: partition, Key: []byte(a.Key), Value: v}
}

// consume reads the committed records of topic until it has n, and
// fails when more come within a moment.
func (b *broker) consume(t *testing.T, topic string, n int) []*kgo.Record {
	t.Helper()
	var out []*kgo.Record
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out = out[:0]
		err := eventlog.ReadToEnd(context.Background(), b.l.Client, topic, func(r *kgo.Record) error {
			out = append(out, r)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(out) >= n || time.Now().After(deadline) {
			break
		}
	}
	if len(out) != n {
		t.Fatalf("%s: %d records, want %d", topic, len(out), n)
	}
	return out
}

// start runs an executor as iotpipe run does: its processor on the
// processor runtime over the actions topic (state in dir), its command
// status tracker, and the processors' runner over the events topic with
// the replies processor, which gives the tracker the replies.
func start(t *testing.T, b *broker, dir string) (*Executor, func()) {
	t.Helper()
	return startWith(t, b, b.l, dir)
}

// startWith is start with the tracker's clients made by clients.
func startWith(t *testing.T, b *broker, clients ClientFactory, dir string) (*Executor, func()) {
	t.Helper()
	e, err := New(Options{Clients: clients})
	if err != nil {
		t.Fatal(err)
	}
	topics := b.l.Topics()
	events, err := processors.NewRunner(b.l, []processors.Processor{replies.Processor{Topic: topics.Replies}}, processors.RunnerOptions{
		Topics: topics, Group: "test-processors", StateDir: filepath.Join(dir, "state"), Logger: logtest.Quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	topics.Changelog = topics.ActionsChangelog
	r, err := processors.NewRunner(b.l, []processors.Processor{e}, processors.RunnerOptions{
		Topics: topics, Input: topics.Actions, Group: "test-actions", StateDir: filepath.Join(dir, "executors"), Logger: logtest.Quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 3)
	go func() { done <- events.Run(ctx) }()
	go func() { done <- r.Run(ctx) }()
	go func() { done <- e.Run(ctx) }()
	return e, func() {
		cancel()
		for range 3 {
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
		r.Close()
		events.Close()
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

func TestRepublishToOutbound(t *testing.T) {
	b := newBroker(t)
	b.produce(t,
		actionRecord(t, 0, schemas.Action{Key: "0/1/alert/0", Rule: "alert", Type: "republish", Thing: "gh-1",
			Params:  map[string]any{"topic": "alerts/gh-1", "qos": 1, "retain": true},
			Payload: map[string]any{"lux": 40000}}),
		actionRecord(t, 0, schemas.Action{Key: "0/2/other/0", Type: "webhook", Params: map[string]any{"url": "http://x"}}),
		actionRecord(t, 1, schemas.Action{Key: "1/5/alert/1", Rule: "alert", Type: "republish", Thing: "gh-2",
			Params: map[string]any{"topic": "alerts/raw", "payload": "shade=close"}, Payload: map[string]any{"x": 1}}),
		actionRecord(t, 1, schemas.Action{Key: "1/6/alert/0", Rule: "alert", Type: "republish", Params: map[string]any{}}),
	)
	_, stop := start(t, b, t.TempDir())
	defer stop()
	out := b.consume(t, topics.Outbound, 2)
	got := map[string]schemas.Outbound{}
	for _, r := range out {
		got[header(r, HeaderAction)] = schemas.DecodeOutbound(r)
	}
	want := map[string]schemas.Outbound{
		"0/1/alert/0": {Topic: "alerts/gh-1", QoS: 1, Retain: true, Key: "gh-1", Payload: []byte(`{"lux":40000}`)},
		"1/5/alert/1": {Topic: "alerts/raw", QoS: 0, Key: "gh-2", Payload: []byte("shade=close")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("outbound\n got %+v\nwant %+v", got, want)
	}
	dlq := b.consume(t, topics.DLQ, 1)
	if string(dlq[0].Key) != "1/6/alert/0" || !strings.Contains(header(dlq[0], "dlq.reason"), `no "topic"`) {
		t.Errorf("dlq = %s %v", dlq[0].Key, dlq[0].Headers)
	}
}

func getStatus(t *testing.T, e *Executor, id string) (int, CommandStatus) {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("GET /api/commands/{id...}", e.Handler())
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest("GET", "/api/commands/"+id, nil))
	var c CommandStatus
	if w.Code == 200 {
		if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
	}
	return w.Code, c
}

func waitState(t *testing.T, e *Executor, id string, want State) CommandStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, c := getStatus(t, e, id)
		if code == 200 && c.State == want {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("command %s: %d %+v, want %s", id, code, c, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCommandStatusFlow(t *testing.T) {
	b := newBroker(t)
	const id, id2 = "0/7/shade/0", "1/9/reboot/0"
	b.produce(t,
		actionRecord(t, 0, schemas.Action{Key: id, Rule: "shade", Type: "command", Thing: "gh-1",
			Params:  map[string]any{"thing": "gh-1", "topic": "greenhouse/gh-1/shade", "payload": `{"shade": "close"}`},
			Payload: map[string]any{"lux": 40000}, FiredAt: 1700000000000}),
		actionRecord(t, 1, schemas.Action{Key: id2, Rule: "reboot", Type: "command", Thing: "dev-9",
			Params: map[string]any{"thing": "dev-9"}, Payload: "now"}),
	)
	e, stop := start(t, b, t.TempDir())
	out := b.consume(t, topics.Outbound, 2)
	byID := map[string]schemas.Outbound{}
	for _, r := range out {
		byID[header(r, HeaderCommand)] = schemas.DecodeOutbound(r)
	}
	shade := byID[id]
	if shade.Topic != "greenhouse/gh-1/shade" || shade.QoS != 1 || shade.Key != "gh-1" {
		t.Errorf("shade command = %+v", shade)
	}
	var body map[string]any
	if err := json.Unmarshal(shade.Payload, &body); err != nil {
		t.Fatalf("payload %s: %v", shade.Payload, err)
	}
	if body["shade"] != "close" || body["command_id"] != id || body["reply_topic"] != "cmd/gh-1/0/7/shade/0/reply" {
		t.Errorf("payload = %s", shade.Payload)
	}
	if r := byID[id2]; r.Topic != "cmd/dev-9/1/9/reboot/0" || string(r.Payload) != `"now"` || r.QoS != 1 {
		t.Errorf("default-topic command = %+v", r)
	}
	c := waitState(t, e, id, Sent)
	if c.Thing != "gh-1" || c.Rule != "shade" || c.Topic != "greenhouse/gh-1/shade" || c.FiredAt != 1700000000000 || c.SentAt == 0 {
		t.Errorf("sent status = %+v", c)
	}
	// Ingest nodes report what they did: the best report wins.
	for _, d := range []schemas.Delivery{
		{Command: id, Node: "n1", Outcome: schemas.NoSubscriber, At: 1},
		{Command: id, Node: "n2", Outcome: schemas.Delivered, At: 2},
		{Command: id2, Node: "n1", Outcome: schemas.Queued, At: 3},
	} {
		b.produce(t, d.Record(topics.Deliveries))
	}
	c = waitState(t, e, id, Delivered)
	if c.DeliveredAt != 2 || c.Nodes["n1"] != schemas.NoSubscriber || c.Nodes["n2"] != schemas.Delivered {
		t.Errorf("delivered status = %+v", c)
	}
	waitState(t, e, id2, Queued)
	if code, _ := getStatus(t, e, "0/999/none/0"); code != 404 {
		t.Errorf("unknown command: %d", code)
	}
	// The device acknowledges on the reply topic.
	env := schemas.Envelope{Type: schemas.EventPublish, Topic: ReplyTopic("gh-1", id), ClientID: "gh-1", ReceivedAt: time.Now().UnixNano()}
	b.produce(t, &kgo.Record{Topic: topics.Events, Key: []byte("gh-1"), Value: []byte(`{"done": true}`), Headers: env.Headers()})
	c = waitState(t, e, id, Acknowledged)
	if string(c.Reply) != `{"done":true}` || c.AcknowledgedAt == 0 {
		t.Errorf("acknowledged status = %+v", c)
	}
	stop()
	// A restarted executor rebuilds the status from the log.
	e2, stop2 := start(t, b, t.TempDir())
	defer stop2()
	c = waitState(t, e2, id, Acknowledged)
	if c.Rule != "shade" || string(c.Reply) != `{"done":true}` {
		t.Errorf("rebuilt status = %+v", c)
	}
	waitState(t, e2, id2, Queued)
}

func TestWithCommandID(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"a": 1}`, `{"command_id":"i","reply_topic":"r","a": 1}`},
		{`{}`, `{"command_id":"i","reply_topic":"r"}`},
		{`{"command_id": "mine"}`, `{"reply_topic":"r","command_id": "mine"}`},
		{`[1]`, `[1]`},
		{`shade=close`, `shade=close`},
		{`{broken`, `{broken`},
	}
	for _, tt := range tests {
		got := string(withCommandID([]byte(tt.in), "i", "r"))
		if got != tt.want {
			t.Errorf("withCommandID(%s) = %s, want %s", tt.in, got, tt.want)
		}
		if json.Valid([]byte(tt.in)) && !json.Valid([]byte(got)) {
			t.Errorf("withCommandID(%s) = %s is not JSON", tt.in, got)
		}
	}
}

func FuzzWithCommandID(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{}`, `[]`, `x`, `{"command_id":1}`, ` { "a" : [1,2] } `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out := withCommandID(b, "0/1/r/0", "cmd/t/0/1/r/0/reply")
		if json.Valid(b) && !json.Valid(out) {
			t.Fatalf("%q became invalid JSON %q", b, out)
		}
	})
}

// An executor node that loses its state, or whose partitions move to a
// node without it, writes no outbound record again: commands are sent to
// devices once (the executor runs on the processor runtime; its offsets
// are restored from its changelog).
func TestOutboundOnceAcrossStateLoss(t *testing.T) {
	b := newBroker(t)
	var recs []*kgo.Record
	for i := range 20 {
		recs = append(recs, actionRecord(t, int32(i%2), schemas.Action{Key: fmt.Sprintf("%d/%d/r/0", i%2, i), Rule: "r", Type: "command", Thing: "d",
			Params: map[string]any{"thing": "d"}, Payload: map[string]any{"i": i}}))
	}
	b.produce(t, recs...)
	_, stop := start(t, b, t.TempDir())
	b.consume(t, topics.Outbound, 20)
	stop()
	_, stop = start(t, b, t.TempDir()) // a new node: no local state
	time.Sleep(time.Second)
	b.produce(t, actionRecord(t, 0, schemas.Action{Key: "0/99/r/0", Rule: "r", Type: "command", Thing: "d", Params: map[string]any{"thing": "d"}}))
	out := b.consume(t, topics.Outbound, 21)
	stop()
	seen := map[string]int{}
	for _, r := range out {
		seen[header(r, HeaderAction)]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("command %s written %d times", k, n)
		}
	}
}

// fetchRecorder is the broker's client factory with a hook on every
// client it makes: it counts the records each topic's fetched batches
// held, and keeps the clients, so a test sees what a stage reads.
type fetchRecorder struct {
	l       *eventlog.Log
	mu      sync.Mutex
	clients []*kgo.Client
	records map[string]int
}

func (f *fetchRecorder) Client(opts ...kgo.Opt) (*kgo.Client, error) {
	cl, err := f.l.Client(append(opts, kgo.WithHooks(f))...)
	if err == nil {
		f.mu.Lock()
		f.clients = append(f.clients, cl)
		f.mu.Unlock()
	}
	return cl, err
}

// OnFetchBatchRead implements kgo.HookFetchBatchRead.
func (f *fetchRecorder) OnFetchBatchRead(_ kgo.BrokerMetadata, topic string, _ int32, m kgo.FetchBatchMetrics) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.records == nil {
		f.records = map[string]int{}
	}
	f.records[topic] += m.NumRecords
}

// The command status tracker does not read the events topic (every
// device publish): a device's reply reaches it on a small topic derived
// from the events by the processors, and it still says acknowledged.
func TestTrackerReadsNoEvents(t *testing.T) {
	b := newBroker(t)
	const id = "0/3/shade/0"
	b.produce(t, actionRecord(t, 0, schemas.Action{Key: id, Rule: "shade", Type: "command", Thing: "gh-1",
		Params: map[string]any{"thing": "gh-1"}, Payload: map[string]any{"lux": 1}}))
	var evs []*kgo.Record
	for i := range 50 {
		env := schemas.Envelope{Type: schemas.EventPublish, Topic: "greenhouse/gh-1/lux", ClientID: "gh-1", ReceivedAt: int64(i + 1)}
		evs = append(evs, &kgo.Record{Topic: topics.Events, Key: []byte("gh-1"), Value: []byte(`{"lux": 1}`), Headers: env.Headers()})
	}
	env := schemas.Envelope{Type: schemas.EventPublish, Topic: ReplyTopic("gh-1", id), ClientID: "gh-1", ReceivedAt: time.Now().UnixNano()}
	evs = append(evs, &kgo.Record{Topic: topics.Events, Key: []byte("gh-1"), Value: []byte(`{"done": true}`), Headers: env.Headers()})
	b.produce(t, evs...)
	rec := &fetchRecorder{l: b.l}
	e, stop := startWith(t, b, rec, t.TempDir())
	defer stop()
	if c := waitState(t, e, id, Acknowledged); string(c.Reply) != `{"done":true}` {
		t.Errorf("acknowledged status = %+v", c)
	}
	var m dto.Metric
	if err := e.metrics.replies.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 1 {
		t.Errorf("iotpipe_republish_command_replies_total = %v, want 1", n)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.clients) == 0 {
		t.Fatal("the executor made no client")
	}
	for _, cl := range rec.clients {
		if slices.Contains(cl.GetConsumeTopics(), topics.Events) {
			t.Errorf("the tracker consumes %v", cl.GetConsumeTopics())
		}
	}
	if n := rec.records[topics.Events]; n > 0 {
		t.Errorf("the tracker fetched %d events records (fetched %v)", n, rec.records)
	}
}
