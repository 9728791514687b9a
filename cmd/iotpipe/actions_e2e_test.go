package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/iotpipe/iotpipe/sinks/webhook"
	"github.com/twmb/franz-go/pkg/kgo"
)

// End-to-end acceptance tests of the rule actions (issue 13): webhook
// outage and rejection under load, kill -9 under load, and a command kept
// for an offline device with a persistent session.

// reliabilityLong reports whether the long variants run
// (IOTPIPE_RELIABILITY=long, as `make reliability` sets).
func reliabilityLong() bool { return os.Getenv("IOTPIPE_RELIABILITY") == "long" }

// readTopic reads a whole topic of the instance's log up to its end offsets.
func (in *instance) readTopic(topic string) []*kgo.Record {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []*kgo.Record
	err := eventlog.ReadToEnd(ctx, in.logClients().Client, topic,
		func(r *kgo.Record) error { out = append(out, r); return nil })
	if err != nil {
		in.t.Fatalf("read %s: %v", topic, err)
	}
	return out
}

// recHeader returns the value of a record header, "" if absent.
func recHeader(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// loggedPublish is a publish event of the log with the idempotency key its
// firing of a rule's first action gets.
type loggedPublish struct {
	key     string // <partition>/<offset>/<rule>/0
	client  string
	payload []byte
}

// firings returns the publishes of the events topic whose MQTT topic has
// prefix, keyed by the idempotency key of the first action of rule.
func (in *instance) firings(prefix, rule string) map[string]loggedPublish {
	in.t.Helper()
	out := map[string]loggedPublish{}
	for _, r := range in.readEvents() {
		env, err := schemas.DecodeEnvelope(r.Headers)
		if err != nil {
			in.t.Fatal(err)
		}
		if env.Type != schemas.EventPublish || !strings.HasPrefix(env.Topic, prefix) {
			continue
		}
		k := fmt.Sprintf("%d/%d/%s/0", r.Partition, r.Offset, rule)
		out[k] = loggedPublish{key: k, client: env.ClientID, payload: r.Value}
	}
	return out
}

// hookReceiver is a webhook target on a fixed local port that can answer
// a chosen status, be taken down (port closed) and brought back.
type hookReceiver struct {
	t      *testing.T
	addr   string
	secret []byte
	status atomic.Int32 // the status to answer
	delay  atomic.Int64 // nanoseconds each request takes (a slow target)
	// hang, while set, holds the requests to its path (a target that
	// hangs) until released or given up by the client, then answers 503.
	hang atomic.Pointer[hookHang]

	mu       sync.Mutex
	srv      *http.Server
	ok       map[string]int       // key -> requests answered 2xx
	first    map[string]time.Time // key -> when it was first answered 2xx
	tries    map[string]int       // key -> requests seen
	bodies   map[string][]byte    // key -> last body answered 2xx
	requests atomic.Int64
}

// hookHang is a path of a hookReceiver that hangs until release closes.
type hookHang struct {
	path    string
	release chan struct{}
}

func newHookReceiver(t *testing.T, secret string, status int) *hookReceiver {
	h := &hookReceiver{t: t, secret: []byte(secret), ok: map[string]int{}, first: map[string]time.Time{}, tries: map[string]int{}, bodies: map[string][]byte{}}
	h.status.Store(int32(status))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	h.serve(ln)
	t.Cleanup(h.down)
	return h
}

func (h *hookReceiver) url(path string) string { return "http://" + h.addr + path }

func (h *hookReceiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: h}
	h.mu.Lock()
	h.srv = srv
	h.mu.Unlock()
	go srv.Serve(ln)
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.requests.Add(1)
	if hg := h.hang.Load(); hg != nil && r.URL.Path == hg.path {
		select {
		case <-hg.release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if d := time.Duration(h.delay.Load()); d > 0 {
		time.Sleep(d)
	}
	var body []byte
	var err error
	if len(h.secret) > 0 {
		body, err = webhook.VerifyRequest(r, h.secret, time.Now(), 5*time.Minute)
		if err != nil {
			h.t.Errorf("webhook signature: %v", err)
			w.WriteHeader(401)
			return
		}
	} else if body, err = io.ReadAll(r.Body); err != nil {
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		h.t.Errorf("webhook request without Idempotency-Key: %s", body)
	}
	status := int(h.status.Load())
	h.mu.Lock()
	h.tries[key]++
	if status/100 == 2 {
		if h.ok[key] == 0 {
			h.first[key] = time.Now()
		}
		h.ok[key]++
		h.bodies[key] = body
	}
	h.mu.Unlock()
	if status != 200 {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		fmt.Fprintf(w, "answering %d on purpose", status)
	}
}

// down closes the port (and every open connection).
func (h *hookReceiver) down() {
	h.mu.Lock()
	srv := h.srv
	h.srv = nil
	h.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// up listens on the same port again.
func (h *hookReceiver) up() {
	h.t.Helper()
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if ln, err = net.Listen("tcp", h.addr); err == nil {
			break
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("reopen the webhook receiver on %s: %v", h.addr, err)
		}
	}
	h.serve(ln)
}

// delivered returns a copy of the per-key counts of 2xx answers.
func (h *hookReceiver) delivered() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := make(map[string]int, len(h.ok))
	for k, n := range h.ok {
		m[k] = n
	}
	return m
}

// awaitAll waits until every key of want was answered 2xx, then checks
// that the receiver saw no key outside want and that each body is the
// rule output of its event; it logs how many keys arrived more than once.
func (h *hookReceiver) awaitAll(want map[string]loggedPublish, timeout time.Duration) {
	h.t.Helper()
	var missing []string
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		got := h.delivered()
		missing = missing[:0]
		for k := range want {
			if got[k] == 0 {
				missing = append(missing, k)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	got := h.delivered()
	if len(missing) > 0 {
		sort.Strings(missing)
		h.t.Errorf("%d of %d firings never reached the webhook receiver within %s, e.g. %v", len(missing), len(want), timeout, missing[:min(len(missing), 10)])
	}
	once, dup, extra := 0, 0, 0
	for k, n := range got {
		if _, ok := want[k]; !ok {
			extra++
			if extra <= 5 {
				h.t.Errorf("the receiver got key %s, which is no firing of an event in the log", k)
			}
			continue
		}
		if n == 1 {
			once++
		} else {
			dup++
		}
	}
	h.mu.Lock()
	for k, p := range want {
		body, ok := h.bodies[k]
		if !ok {
			continue
		}
		var gotOut, wantOut map[string]any
		if err := json.Unmarshal(body, &gotOut); err != nil || json.Unmarshal(p.payload, &wantOut) != nil ||
			fmt.Sprint(gotOut["dev"], gotOut["seq"]) != fmt.Sprint(wantOut["dev"], wantOut["seq"]) {
			h.t.Errorf("firing %s: body %s is not the output of its event %s", k, body, p.payload)
		}
	}
	h.mu.Unlock()
	h.t.Logf("webhook receiver: %d firings expected, %d received once, %d more than once (duplicates), %d HTTP requests in all",
		len(want), once, dup, h.requests.Load())
}

// load publishes QoS 1 from several paho clients until stopped.
type load struct {
	stop   chan struct{}
	wg     sync.WaitGroup
	acked  atomic.Int64
	failed atomic.Int64
}

// startLoad connects clients publishing `{"dev":id,"seq":n}` to
// prefix+id, one publish every interval each, waiting for each PUBACK.
// With strict, a publish that is not acknowledged fails the test.
func startLoad(t *testing.T, in *instance, prefix string, clients int, interval time.Duration, strict bool) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	for c := 0; c < clients; c++ {
		id := fmt.Sprintf("%s%02d", strings.ReplaceAll(strings.Trim(prefix, "/"), "/", "-"), c)
		o := paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", in.mqtt)).SetClientID(id).SetAutoReconnect(false).SetConnectRetry(false)
		cl := paho.NewClient(o)
		if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", id, tok.Error())
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer cl.Disconnect(100)
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for seq := 0; ; seq++ {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				tok := cl.Publish(prefix+id, 1, false, fmt.Sprintf(`{"dev":%q,"seq":%d}`, id, seq))
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					l.failed.Add(1)
					if strict {
						t.Errorf("%s: publish %d not acknowledged: %v", id, seq, tok.Error())
					}
					return
				}
				l.acked.Add(1)
			}
		}()
	}
	return l
}

func (l *load) end() {
	close(l.stop)
	l.wg.Wait()
}

// The webhook target goes down under load, answering 503 for the first
// half of the outage and with its port closed for the second half, then
// comes back: every firing's Idempotency-Key reaches it after recovery
// (duplicates are counted and logged). A second rule on the same events
// posts to a healthy target, which keeps receiving during the outage. The
// outage lasts 10 s here and 30 s with IOTPIPE_RELIABILITY=long.
func TestWebhookOutageUnderLoad(t *testing.T) {
	outage := 10 * time.Second
	if reliabilityLong() {
		outage = 30 * time.Second
	}
	const secret = "outage-secret"
	rx := newHookReceiver(t, secret, 200)
	healthy := newHookReceiver(t, secret, 200)
	in := newInstance(t)
	writeRule(t, in, "hook.sql", `CREATE RULE hook AS SELECT dev, seq FROM 'wh/+'
THEN webhook(url => '`+rx.url("/hook")+`', headers => {'X-Dev': '${dev}'});
CREATE RULE hook2 AS SELECT dev, seq FROM 'wh/+'
THEN webhook(url => '`+healthy.url("/hook2")+`');`)
	in.start("--webhook-secret", secret)

	l := startLoad(t, in, "wh/", 8, 40*time.Millisecond, true) // ~200 events/s
	time.Sleep(3 * time.Second)
	before := len(rx.delivered())
	if before == 0 {
		t.Fatal("no firing reached the receiver before the outage")
	}
	h0 := len(healthy.delivered())
	rx.status.Store(503)
	time.Sleep(outage / 2)
	rx.down()
	time.Sleep(outage / 2)
	h1 := len(healthy.delivered())
	rx.status.Store(200)
	rx.up()
	recovered := time.Now()
	time.Sleep(2 * time.Second) // load continues after recovery
	l.end()
	if l.failed.Load() > 0 {
		t.Fatalf("%d publishes not acknowledged during the webhook outage", l.failed.Load())
	}
	if h1 <= h0 {
		t.Errorf("the healthy target received nothing while the other was down (%d firings before, %d after)", h0, h1)
	}
	want := in.firings("wh/", "hook")
	if int64(len(want)) < l.acked.Load() {
		t.Fatalf("%d acknowledged publishes, only %d in the log", l.acked.Load(), len(want))
	}
	rx.awaitAll(want, 45*time.Second+outage)
	t.Logf("outage %s, %d firings before it; all delivered %s after recovery; the healthy target got %d firings during the outage",
		outage, before, time.Since(recovered).Round(100*time.Millisecond), h1-h0)
	healthy.awaitAll(in.firings("wh/", "hook2"), 30*time.Second)
	// The DLQ holds no webhook firing: every one was delivered.
	for _, r := range in.readTopic(schemas.DefaultTopics().DLQ) {
		t.Errorf("dead letter during a recoverable outage: key %s reason %q", r.Key, recHeader(r, "dlq.reason"))
	}
}

// A target that answers 400 forever: each firing is dead-lettered on
// iotpipe.dlq at once (no retry) with dlq.stage=webhook and the reason,
// the record value being the action record unchanged.
func TestWebhookRejectedGoesToDLQ(t *testing.T) {
	rx := newHookReceiver(t, "", 400)
	in := newInstance(t)
	writeRule(t, in, "reject.sql", `CREATE RULE refused AS SELECT dev, seq FROM 'rej/+'
THEN webhook(url => '`+rx.url("/refuse")+`');`)
	in.start()
	cl := paho.NewClient(paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", in.mqtt)).SetClientID("rej-1").SetAutoReconnect(false))
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	const n = 20
	for i := 0; i < n; i++ {
		if tok := cl.Publish("rej/rej-1", 1, false, fmt.Sprintf(`{"dev":"rej-1","seq":%d}`, i)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	cl.Disconnect(100)
	want := in.firings("rej/", "refused")
	if len(want) != n {
		t.Fatalf("%d publishes in the log, want %d", len(want), n)
	}
	dlq := map[string]webhook.DeadLetter{}
	for deadline := time.Now().Add(30 * time.Second); len(dlq) < n && time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		for _, r := range in.readTopic(schemas.DefaultTopics().DLQ) {
			if recHeader(r, "dlq.stage") != "webhook" {
				t.Errorf("DLQ record of stage %q: %s", recHeader(r, "dlq.stage"), r.Value)
				continue
			}
			if recHeader(r, "dlq.reason") == "" {
				t.Errorf("DLQ record %s without dlq.reason", r.Key)
			}
			d, err := webhook.ParseDeadLetter(r)
			if err != nil {
				t.Fatal(err)
			}
			if prev, ok := dlq[d.Key]; ok && prev.Source != d.Source {
				t.Logf("key %s dead-lettered twice (%s and %s)", d.Key, prev.Source, d.Source)
			}
			dlq[d.Key] = d
		}
	}
	for k := range want {
		d, ok := dlq[k]
		if !ok {
			t.Errorf("firing %s not on the DLQ", k)
			continue
		}
		var a schemas.Action
		if err := json.Unmarshal(d.Action, &a); err != nil || a.Key != k || a.Type != "webhook" || a.Rule != "refused" {
			t.Errorf("DLQ value of %s is not its action record: %s (%v)", k, d.Action, err)
		}
		if d.Kind != "rejected" || d.Status != 400 || d.Attempts != 1 || !strings.Contains(d.Reason, "400") ||
			!strings.Contains(d.Response, "answering 400") || !strings.HasPrefix(d.URL, rx.url("/refuse")) {
			t.Errorf("DLQ record of %s: %+v", k, d)
		}
	}
	for k := range dlq {
		if _, ok := want[k]; !ok {
			t.Errorf("DLQ holds %s, which is no firing of an event in the log", k)
		}
	}
	rx.mu.Lock()
	defer rx.mu.Unlock()
	for k := range want {
		if n := rx.tries[k]; n != 1 {
			t.Errorf("a 400 is final, yet the receiver saw %s %d times", k, n)
		}
	}
	t.Logf("%d firings rejected with 400, all on iotpipe.dlq; e.g. reason %q", len(dlq), dlq[firstKey(want)].Reason)
}

func firstKey[V any](m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		return ""
	}
	return keys[0]
}

// kill -9 under load: events fire a webhook rule whose target is slower
// than the load (so firings are queued at the kill) while `iotpipe run` is
// killed mid-stream and restarted (and loaded again); every firing of every
// event in the log reaches the receiver at least once; duplicates are
// reported. One kill here, five in a row with IOTPIPE_RELIABILITY=long.
func TestWebhookKillUnderLoad(t *testing.T) {
	kills := 1
	if reliabilityLong() {
		kills = 5
	}
	rx := newHookReceiver(t, "", 200)
	rx.delay.Store(int64(20 * time.Millisecond)) // slower than the load: a backlog at the kill
	in := newInstance(t)
	writeRule(t, in, "hook.sql", `CREATE RULE hook AS SELECT dev, seq FROM 'kl/+'
THEN webhook(url => '`+rx.url("/hook")+`');`)
	in.start()
	var before int64
	var atKill []int
	for k := 0; k < kills; k++ {
		l := startLoad(t, in, fmt.Sprintf("kl/r%d-", k), 8, 10*time.Millisecond, false)
		for deadline := time.Now().Add(20 * time.Second); l.acked.Load() < 1500 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		atKill = append(atKill, len(rx.delivered()))
		in.kill() // kill -9 mid-stream
		l.end()
		if l.acked.Load() == 0 {
			t.Fatal("nothing acknowledged before the kill")
		}
		before += l.acked.Load()
		in.start()
	}
	l2 := startLoad(t, in, "kl/b", 4, 10*time.Millisecond, true)
	time.Sleep(2 * time.Second)
	l2.end()
	want := in.firings("kl/", "hook")
	if int64(len(want)) < before+l2.acked.Load() {
		t.Fatalf("%d acknowledged publishes, only %d in the log", before+l2.acked.Load(), len(want))
	}
	rx.awaitAll(want, 60*time.Second)
	t.Logf("%d kill -9 with %d publishes acknowledged before them (firings delivered at each kill: %v), %d after the last restart", kills, before, atKill, l2.acked.Load())
}

// kill -9 while the webhook target is down: firings being retried (503)
// when `iotpipe run` dies must not be taken as done; after the restart and
// the target's recovery every firing of every event in the log reaches it.
func TestWebhookKillDuringOutage(t *testing.T) {
	rx := newHookReceiver(t, "", 200)
	in := newInstance(t)
	writeRule(t, in, "hook.sql", `CREATE RULE hook AS SELECT dev, seq FROM 'ko/+'
THEN webhook(url => '`+rx.url("/hook")+`');`)
	in.start()
	l := startLoad(t, in, "ko/", 4, 20*time.Millisecond, false)
	time.Sleep(2 * time.Second)
	rx.status.Store(503)
	time.Sleep(4 * time.Second) // firings pile up in retries
	retrying := rx.requests.Load()
	in.kill()
	l.end()
	in.start()
	l2 := startLoad(t, in, "ko/b", 4, 20*time.Millisecond, true)
	time.Sleep(3 * time.Second) // still down after the restart
	rx.status.Store(200)
	time.Sleep(time.Second)
	l2.end()
	want := in.firings("ko/", "hook")
	if int64(len(want)) < l.acked.Load()+l2.acked.Load() {
		t.Fatalf("%d acknowledged publishes, only %d in the log", l.acked.Load()+l2.acked.Load(), len(want))
	}
	rx.awaitAll(want, 60*time.Second)
	t.Logf("%d publishes before kill -9 (target answering 503 for 4 s, %d requests by then), %d after the restart", l.acked.Load(), retrying, l2.acked.Load())
}

// An offline device with a persistent session gets its command on
// reconnect: it subscribes QoS 1 with CleanSession=false, disconnects, a
// rule fires command(...) for it, and when it reconnects with the same
// client id the command arrives; GET /api/commands/{id} says queued
// (kept for the offline session), then acknowledged with the reply the
// device published to cmd/{thing}/{id}/reply.
func TestCommandKeptForOfflineDevice(t *testing.T) {
	in := newInstance(t)
	writeRule(t, in, "valve.sql", `CREATE RULE open_valve AS SELECT * FROM 'ctl/+/open'
THEN command(thing => '${topic(2)}', payload => '{"open": true}');`)
	in.start()
	const thing = "valve-1"
	received := make(chan paho.Message, 8)
	device := func() paho.Client {
		o := paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", in.mqtt)).SetClientID(thing).
			SetCleanSession(false).SetAutoReconnect(false).
			SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { // a resumed session's messages
				if !strings.HasSuffix(m.Topic(), "/reply") {
					received <- m
				}
			})
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("device connect: %v", tok.Error())
		}
		return c
	}
	dev := device()
	if tok := dev.Subscribe("cmd/"+thing+"/#", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	dev.Disconnect(250)

	// Another client triggers the rule while the device is offline.
	mosquittoPub(t, in, "operator", "ctl/"+thing+"/open", `{"by":"operator"}`)
	var id string
	for deadline := time.Now().Add(30 * time.Second); id == ""; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no command action on iotpipe.actions")
		}
		for _, r := range in.readTopic(schemas.DefaultTopics().Actions) {
			var a schemas.Action
			if err := json.Unmarshal(r.Value, &a); err != nil {
				t.Fatal(err)
			}
			if a.Type == "command" && a.Rule == "open_valve" {
				if a.Thing != "operator" && a.Thing != thing {
					t.Errorf("command action thing %q", a.Thing)
				}
				if a.Key != string(r.Key) || !strings.HasSuffix(a.Key, "/open_valve/0") {
					t.Errorf("command action key %q (record key %q)", a.Key, r.Key)
				}
				id = a.Key
			}
		}
	}
	status := func(want string) map[string]any {
		t.Helper()
		var m map[string]any
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			resp, err := http.Get(in.url("/api/commands/" + id))
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				m = nil
				_ = json.Unmarshal(b, &m)
				if resp.StatusCode == 200 && m["state"] == want {
					return m
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET /api/commands/%s: %v, want state %s", id, m, want)
			}
		}
	}
	st := status("queued")
	if st["thing"] != thing || st["rule"] != "open_valve" || st["topic"] != "cmd/"+thing+"/"+id {
		t.Errorf("command status %v", st)
	}
	// Wait until the MQTT front has routed the outbound message (to the
	// offline session) before the device comes back.
	for deadline := time.Now().Add(30 * time.Second); metricValue(t, in, "iotpipe_ingest_outbound_delivered_total") < 1; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the outbound command was never routed by the MQTT front")
		}
	}
	select {
	case m := <-received:
		t.Fatalf("the offline device got %s before reconnecting", m.Topic())
	default:
	}

	dev = device() // same client id, same session
	defer dev.Disconnect(100)
	var msg paho.Message
	select {
	case msg = <-received:
	case <-time.After(20 * time.Second):
		t.Fatal("the device did not receive its command on reconnect")
	}
	var body map[string]any
	if err := json.Unmarshal(msg.Payload(), &body); err != nil {
		t.Fatalf("command payload %s: %v", msg.Payload(), err)
	}
	reply := "cmd/" + thing + "/" + id + "/reply"
	if msg.Topic() != "cmd/"+thing+"/"+id || msg.Qos() != 1 || body["open"] != true || body["command_id"] != id || body["reply_topic"] != reply {
		t.Fatalf("command on %s qos %d: %s", msg.Topic(), msg.Qos(), msg.Payload())
	}
	if tok := dev.Publish(reply, 1, false, `{"ok":true}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	st = status("acknowledged")
	if r, _ := st["reply"].(map[string]any); r["ok"] != true {
		t.Errorf("acknowledged command: reply %v", st["reply"])
	}
	select {
	case m := <-received:
		t.Errorf("the command arrived twice: %s %s", m.Topic(), m.Payload())
	case <-time.After(time.Second):
	}
	// The status is rebuilt from the log after a kill -9.
	dev.Disconnect(100)
	in.kill()
	in.start()
	if st = status("acknowledged"); st["thing"] != thing || st["rule"] != "open_valve" {
		t.Errorf("command status after a restart: %v", st)
	}
}

// The same offline device, but `iotpipe run` is restarted (SIGTERM, a
// clean drain) while the command waits for it: the device reconnects to
// its persistent session (CleanSession=false) and must still receive the
// command, whether the rule fired before the restart (the command was
// routed to the offline session) or after it (the session and its
// subscription were created before it).
func TestCommandForOfflineDeviceSurvivesRestart(t *testing.T) {
	for _, fireBefore := range []bool{true, false} {
		t.Run(fmt.Sprintf("fired_before_restart=%v", fireBefore), func(t *testing.T) {
			in := newInstance(t)
			writeRule(t, in, "valve.sql", `CREATE RULE open_valve AS SELECT * FROM 'ctl/+/open'
THEN command(thing => '${topic(2)}', payload => '{"open": true}');`)
			in.start()
			const thing = "valve-2"
			received := make(chan paho.Message, 8)
			device := func() (paho.Client, bool) {
				o := paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", in.mqtt)).SetClientID(thing).
					SetCleanSession(false).SetAutoReconnect(false).
					SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { received <- m })
				c := paho.NewClient(o)
				tok := c.Connect()
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Fatalf("device connect: %v", tok.Error())
				}
				return c, tok.(*paho.ConnectToken).SessionPresent()
			}
			dev, _ := device()
			if tok := dev.Subscribe("cmd/"+thing+"/#", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			dev.Disconnect(250)
			fire := func() {
				mosquittoPub(t, in, "operator", "ctl/"+thing+"/open", `{"by":"operator"}`)
				for deadline := time.Now().Add(30 * time.Second); metricValue(t, in, "iotpipe_ingest_outbound_delivered_total") < 1; time.Sleep(100 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("the outbound command was never routed by the MQTT front")
					}
				}
			}
			if fireBefore {
				fire()
			}
			in.stop()
			in.start()
			if !fireBefore {
				fire()
			}
			dev, present := device()
			defer dev.Disconnect(100)
			select {
			case m := <-received:
				if !strings.HasPrefix(m.Topic(), "cmd/"+thing+"/") {
					t.Errorf("message on %s", m.Topic())
				}
			case <-time.After(15 * time.Second):
				t.Errorf("the device did not receive its command on reconnect after the restart (session present on reconnect: %v)", present)
			}
		})
	}
}

// metricValue returns the sum of a Prometheus metric's samples at
// /metrics, -1 if unreadable.
func metricValue(t *testing.T, in *instance, name string) float64 {
	t.Helper()
	resp, err := http.Get(in.url("/metrics"))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}

// stop ends the child with SIGTERM (a clean drain) and waits for it.
func (in *instance) stop() {
	in.t.Helper()
	if in.cmd == nil || in.cmd.Process == nil {
		return
	}
	in.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { in.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		in.t.Errorf("iotpipe did not stop within 30 s of SIGTERM")
		in.cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
	in.cmd = nil
	in.logf.Close()
	in.checkLog()
}

// A command's status says what happened to it: delivered to a connected
// subscriber, or no_subscriber when no session subscribes to its topic
// (before, both said delivered; queued for an offline persistent
// session is TestCommandKeptForOfflineDevice).
func TestCommandStatusSaysWhatHappened(t *testing.T) {
	in := newInstance(t)
	writeRule(t, in, "cmd.sql", `CREATE RULE ping AS SELECT * FROM 'ping/+'
THEN command(thing => '${topic(2)}', payload => '{"ping": 1}');`)
	in.start()
	online := paho.NewClient(paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", in.mqtt)).SetClientID("dev-on"))
	if tok := online.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer online.Disconnect(100)
	got := make(chan string, 4)
	if tok := online.Subscribe("cmd/dev-on/#", 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() }); !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("subscribe")
	}
	mosquittoPub(t, in, "op", "ping/dev-on", `{}`)
	mosquittoPub(t, in, "op", "ping/dev-none", `{}`)
	ids := map[string]string{}
	for deadline := time.Now().Add(30 * time.Second); len(ids) < 2; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("commands on iotpipe.actions: %v", ids)
		}
		for _, r := range in.readTopic(schemas.DefaultTopics().Actions) {
			var a schemas.Action
			if json.Unmarshal(r.Value, &a) == nil && a.Type == "command" {
				thing, _ := a.Params["thing"].(string)
				ids[thing] = a.Key
			}
		}
	}
	for thing, want := range map[string]string{"dev-on": "delivered", "dev-none": "no_subscriber"} {
		var m map[string]any
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			resp, err := http.Get(in.url("/api/commands/" + ids[thing]))
			if err == nil {
				m = nil
				json.NewDecoder(resp.Body).Decode(&m)
				resp.Body.Close()
				if m["state"] == want {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("command to %s: %v, want state %s", thing, m, want)
			}
		}
		if nodes, _ := m["nodes"].(map[string]any); len(nodes) != 1 {
			t.Errorf("command to %s: nodes %v, want the one ingest node's report", thing, m["nodes"])
		}
	}
	select {
	case topic := <-got:
		if !strings.HasPrefix(topic, "cmd/dev-on/") {
			t.Errorf("the online device got %s", topic)
		}
	case <-time.After(10 * time.Second):
		t.Error("the online device did not get its command")
	}
}
