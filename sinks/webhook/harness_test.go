package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Test harness: an in-process Kafka (kfake over TCP), webhook receivers,
// and fast-retrying executor options.

var topics = schemas.DefaultTopics()

// broker is the embedded log (kfake over TCP, iotpipe's topics created,
// the executed ledger among them), with a client for producing actions
// and inspecting offsets.
type broker struct {
	log *eventlog.Log
	cl  *kgo.Client
	adm *kadm.Client
}

func newBroker(t testing.TB, partitions int32) *broker {
	t.Helper()
	l := logtest.Open(t, partitions)
	cl, err := l.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &broker{log: l, cl: cl, adm: kadm.NewClient(cl)}
}

// action is a webhook firing to url with an index-derived key.
func action(i int, url string) schemas.Action {
	return schemas.Action{
		Key: fmt.Sprintf("%d/%d/rule-%d/0", i%4, i, i%3), Rule: fmt.Sprintf("rule-%d", i%3), Type: "webhook",
		Params:  map[string]any{"url": url},
		Payload: map[string]any{"i": i, "thing": fmt.Sprintf("thing-%d", i)},
		Thing:   fmt.Sprintf("thing-%d", i), FiredAt: 1_700_000_000_000 + int64(i),
	}
}

// produce writes actions to partitions by index (i % partitions) and
// returns their record values by key.
func (b *broker) produce(t testing.TB, partitions int, acts ...schemas.Action) map[string][]byte {
	t.Helper()
	values := map[string][]byte{}
	var recs []*kgo.Record
	for i, a := range acts {
		v, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		values[a.Key] = v
		recs = append(recs, &kgo.Record{Topic: topics.Actions, Partition: int32(i % partitions), Key: []byte(a.Key), Value: v})
	}
	if err := b.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return values
}

// committed returns the group's committed offset of a partition, -1 if
// none.
func (b *broker) committed(t testing.TB, partition int32) int64 {
	t.Helper()
	offs, err := b.adm.FetchOffsets(context.Background(), DefaultGroup)
	if err != nil {
		t.Fatal(err)
	}
	o, ok := offs.Lookup(topics.Actions, partition)
	if !ok {
		return -1
	}
	return o.At
}

// dlq reads n records from the DLQ topic.
func (b *broker) dlq(t testing.TB, n int) []*kgo.Record {
	t.Helper()
	cl, err := b.log.Client(kgo.ConsumeTopics(topics.DLQ))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d DLQ records, want %d", len(out), n)
		}
		out = append(out, f.Records()...)
	}
	return out
}

// dlqEnd returns the number of records in the DLQ topic.
func (b *broker) dlqEnd(t testing.TB) int64 {
	t.Helper()
	ends, err := b.adm.ListEndOffsets(context.Background(), topics.DLQ)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// receiver is a webhook target that checks signatures and drops
// duplicates by Idempotency-Key, as a careful receiver does.
type receiver struct {
	t      testing.TB
	secret func(key string) []byte
	// answer picks the status for a request; nil answers 200.
	answer func(key string) int

	mu       sync.Mutex
	accepted map[string]int // 2xx answers per key
	bodies   map[string][]byte
	refused  int // non-2xx answers
	headers  map[string]http.Header
	bad      []string
}

func newReceiver(t testing.TB, secret []byte) *receiver {
	return &receiver{t: t, secret: func(string) []byte { return secret },
		accepted: map[string]int{}, bodies: map[string][]byte{}, headers: map[string]http.Header{}}
}

func (rv *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get(HeaderIdempotencyKey)
	var body []byte
	var err error
	if secret := rv.secret(key); secret != nil {
		body, err = VerifyRequest(r, secret, time.Now(), 5*time.Minute)
	} else {
		body, err = io.ReadAll(r.Body)
		if r.Header.Get(HeaderSignature) != "" {
			err = fmt.Errorf("unexpected signature on an unsigned request")
		}
	}
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if key == "" || err != nil {
		rv.bad = append(rv.bad, fmt.Sprintf("key %q: %v", key, err))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	status := http.StatusOK
	if rv.answer != nil {
		status = rv.answer(key)
	}
	if status/100 != 2 {
		rv.refused++
		w.WriteHeader(status)
		return
	}
	rv.accepted[key]++
	rv.bodies[key] = body
	rv.headers[key] = r.Header.Clone()
	w.WriteHeader(status)
}

// stats returns keys accepted at least once, duplicate acceptances, and
// refusals.
func (rv *receiver) stats() (unique, dups, refused int) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	for _, n := range rv.accepted {
		unique++
		dups += n - 1
	}
	return unique, dups, rv.refused
}

func (rv *receiver) count(key string) int {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.accepted[key]
}

func (rv *receiver) checkNoBad(t testing.TB) {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	if len(rv.bad) > 0 {
		t.Errorf("receiver rejected %d requests, first: %s", len(rv.bad), rv.bad[0])
	}
}

// testOptions are fast-retrying executor options for tests.
func testOptions(b *broker, secret []byte) Options {
	return Options{
		Clients:           b.log,
		Secret:            secret,
		RequestTimeout:    5 * time.Second,
		InitialBackoff:    5 * time.Millisecond,
		MaxBackoff:        50 * time.Millisecond,
		MaxAttempts:       100000,
		MaxElapsed:        5 * time.Minute,
		TargetConcurrency: 4,
		TargetQueue:       1000,
		CommitInterval:    20 * time.Millisecond,
		DrainTimeout:      time.Second,
		Logger:            slog.New(slog.DiscardHandler),
		KafkaOptions:      []kgo.Opt{kgo.FetchMaxWait(100 * time.Millisecond)},
	}
}

// running is an Executor whose Run goroutine the test controls.
type running struct {
	*Executor
	cancel context.CancelFunc
	done   chan error
}

// startExecutor runs an Executor until the test ends (or stop, or crash).
func startExecutor(t testing.TB, o Options) *running {
	t.Helper()
	e, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Executor: e, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- e.Run(ctx) }()
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// stop ends Run as a shutdown does and returns its error.
func (r *running) stop() error {
	r.cancel()
	err, ok := <-r.done
	if ok {
		close(r.done)
	}
	return err
}

// crash ends Run as a crash of the process would (the kill hook).
func (r *running) crash() {
	r.kill()
	_ = r.stop()
}

// waitFor polls cond until it holds or 30s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// flakyServer is an HTTP server on a fixed address that can be taken down
// (connections refused) and brought back.
type flakyServer struct {
	t    testing.TB
	addr string
	h    http.Handler
	srv  *http.Server
}

func newFlakyServer(t testing.TB, h http.Handler) *flakyServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &flakyServer{t: t, addr: ln.Addr().String(), h: h}
	s.serve(ln)
	t.Cleanup(s.down)
	return s
}

func (s *flakyServer) serve(ln net.Listener) {
	s.srv = &http.Server{Handler: s.h}
	go s.srv.Serve(ln) //nolint:errcheck // returns when closed
}

func (s *flakyServer) down() {
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}

func (s *flakyServer) up() {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		s.t.Fatalf("listen again on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

// counterValue reads a counter's current value.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// owned returns how many partitions e holds.
func owned(e *running) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.parts)
}

// produceInTransaction writes actions to partition 0 in one transaction,
// committed or aborted, as the processor runtime does.
func (b *broker) produceInTransaction(t testing.TB, commit bool, acts ...schemas.Action) {
	t.Helper()
	cl, err := b.log.Client(kgo.TransactionalID(fmt.Sprintf("test-%d", time.Now().UnixNano())), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, a := range acts {
		v, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topics.Actions, Partition: 0, Key: []byte(a.Key), Value: v}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatal(err)
	}
}
