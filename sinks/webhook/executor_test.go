package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestExecutorDeliversSignedRequests(t *testing.T) {
	const partitions = 3
	b := newBroker(t, partitions)
	optSecret, ruleSecret := []byte("executor-secret"), []byte("rule-secret")
	rv := newReceiver(t, nil)
	rv.secret = func(key string) []byte {
		var i int
		fmt.Sscanf(key[2:], "%d/", &i)
		if i%2 == 0 {
			return ruleSecret
		}
		return optSecret
	}
	// Every key's first attempt is refused, so each firing is sent twice
	// and the key must be the same on both.
	seenOnce := map[string]bool{}
	var keysPerAttempt []string
	rv.answer = func(key string) int {
		keysPerAttempt = append(keysPerAttempt, key)
		if !seenOnce[key] {
			seenOnce[key] = true
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	srv := httptest.NewServer(rv)
	defer srv.Close()

	var acts []schemas.Action
	for i := range 30 {
		a := action(i, srv.URL+"/hooks/offline")
		a.Params["headers"] = map[string]any{"X-Fleet": "greenhouse", "Authorization": "Bearer t0k"}
		if i%2 == 0 {
			a.Params["secret"] = string(ruleSecret)
		}
		acts = append(acts, a)
	}
	others := []schemas.Action{
		{Key: "0/900/r/0", Type: "command", Params: map[string]any{"url": srv.URL}},
		{Key: "1/901/r/0", Type: "kafka"},
	}
	values := b.produce(t, partitions, append(acts, others...)...)
	if err := b.cl.ProduceSync(context.Background(), &kgo.Record{Topic: topics.Actions, Partition: 2, Value: []byte("not json")}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	e := startExecutor(t, testOptions(b, optSecret))
	waitFor(t, "30 deliveries", func() bool { u, _, _ := rv.stats(); return u == 30 })
	rv.checkNoBad(t)

	unique, dups, refused := rv.stats()
	t.Logf("delivered %d keys, %d duplicates, %d refused attempts", unique, dups, refused)
	if refused != 30 {
		t.Errorf("refused %d first attempts, want 30", refused)
	}
	rv.mu.Lock()
	for _, a := range acts {
		if n := rv.accepted[a.Key]; n != 1 {
			t.Errorf("key %s accepted %d times, want 1", a.Key, n)
		}
		var sent struct{ Payload json.RawMessage }
		if err := json.Unmarshal(values[a.Key], &sent); err != nil {
			t.Fatal(err)
		}
		if string(rv.bodies[a.Key]) != string(sent.Payload) {
			t.Errorf("key %s: body %s, want the payload %s", a.Key, rv.bodies[a.Key], sent.Payload)
		}
		h := rv.headers[a.Key]
		if h.Get("X-Fleet") != "greenhouse" || h.Get("Authorization") != "Bearer t0k" || h.Get("Content-Type") != "application/json" {
			t.Errorf("key %s: headers %v", a.Key, h)
		}
	}
	// Both attempts of each firing carried the action's key.
	attempts := map[string]int{}
	for _, k := range keysPerAttempt {
		attempts[k]++
	}
	for _, a := range acts {
		if attempts[a.Key] != 2 {
			t.Errorf("key %s seen on %d attempts, want 2 (one refused, one accepted)", a.Key, attempts[a.Key])
		}
	}
	if len(attempts) != len(acts) {
		t.Errorf("receiver saw %d distinct keys, want %d (no others)", len(attempts), len(acts))
	}
	rv.mu.Unlock()

	// Skipped records (other types, undecodable) are acknowledged too:
	// every partition commits to its end.
	ends, err := b.adm.ListEndOffsets(context.Background(), topics.Actions)
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(partitions) {
		end, _ := ends.Lookup(topics.Actions, p)
		waitFor(t, fmt.Sprintf("partition %d committed to %d", p, end.Offset), func() bool { return b.committed(t, p) == end.Offset })
	}
	if got := counterValue(e.metrics.skipped.WithLabelValues("other_type")); got != 2 {
		t.Errorf("skipped other_type = %v, want 2", got)
	}
	if got := counterValue(e.metrics.skipped.WithLabelValues("undecodable")); got != 1 {
		t.Errorf("skipped undecodable = %v, want 1", got)
	}
	target := "http://" + srv.Listener.Addr().String()
	if got := counterValue(e.metrics.delivered.WithLabelValues(target)); got != 30 {
		t.Errorf("delivered metric = %v, want 30", got)
	}
	if got := counterValue(e.metrics.retried.WithLabelValues(target)); got != 30 {
		t.Errorf("retried metric = %v, want 30", got)
	}
	if n := b.dlqEnd(t); n != 0 {
		t.Errorf("DLQ has %d records, want none", n)
	}
}

func TestExecutorTargetDownThenUp(t *testing.T) {
	const partitions, n = 4, 400
	b := newBroker(t, partitions)
	secret := []byte("s")
	rv := newReceiver(t, secret)
	var mu sync.Mutex
	unavailable := true
	rv.answer = func(string) int {
		mu.Lock()
		defer mu.Unlock()
		if unavailable {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	fs := newFlakyServer(t, rv)
	fs.down() // connection refused

	// A second, healthy target keeps receiving while the first is down.
	healthy := newReceiver(t, secret)
	hsrv := httptest.NewServer(healthy)
	defer hsrv.Close()

	var acts []schemas.Action
	for i := range n {
		acts = append(acts, action(i, "http://"+fs.addr+"/hook"))
	}
	for i := range 40 {
		acts = append(acts, action(n+i, hsrv.URL))
	}
	b.produce(t, partitions, acts...)

	e := startExecutor(t, testOptions(b, secret))
	target := "http://" + fs.addr
	retries := func() float64 { return counterValue(e.metrics.retried.WithLabelValues(target)) }
	waitFor(t, "healthy target served while the other is down", func() bool { u, _, _ := healthy.stats(); return u == 40 })
	waitFor(t, "100 retries against a refusing target", func() bool { return retries() >= 100 })
	if u, _, _ := rv.stats(); u != 0 {
		t.Fatalf("down target accepted %d", u)
	}

	fs.up() // answers 503 now
	waitFor(t, "200 refusals with 503", func() bool { _, _, r := rv.stats(); return r >= 200 })

	mu.Lock()
	unavailable = false
	mu.Unlock()
	waitFor(t, "every firing delivered after recovery", func() bool { u, _, _ := rv.stats(); return u == n })
	rv.checkNoBad(t)
	unique, dups, refused := rv.stats()
	t.Logf("after recovery: %d keys delivered, %d duplicates dropped by the receiver, %d refusals, %.0f retries", unique, dups, refused, retries())
	for _, a := range acts[:n] {
		if rv.count(a.Key) < 1 {
			t.Errorf("key %s never delivered", a.Key)
		}
	}
	if got := b.dlqEnd(t); got != 0 {
		t.Errorf("DLQ has %d records, want none", got)
	}
	ends, err := b.adm.ListEndOffsets(context.Background(), topics.Actions)
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(partitions) {
		end, _ := ends.Lookup(topics.Actions, p)
		waitFor(t, "offsets committed to the end", func() bool { return b.committed(t, p) == end.Offset })
	}
}

func TestExecutorDeadLetters(t *testing.T) {
	b := newBroker(t, 1)
	bad := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":"missing field lux"}`)
	})
	badSrv := httptest.NewServer(bad)
	defer badSrv.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer down.Close()
	good := newReceiver(t, nil)
	goodSrv := httptest.NewServer(good)
	defer goodSrv.Close()

	noURL := action(2, "")
	delete(noURL.Params, "url")
	acts := []schemas.Action{
		action(0, badSrv.URL+"/hook"),
		action(1, down.URL+"/hook"),
		noURL,
		action(3, goodSrv.URL), // after the dead letters in the same partition
	}
	values := b.produce(t, 1, acts...)
	o := testOptions(b, nil)
	o.MaxAttempts = 3
	e := startExecutor(t, o)

	recs := b.dlq(t, 3)
	got := map[string]DeadLetter{}
	for _, r := range recs {
		d, err := ParseDeadLetter(r)
		if err != nil {
			t.Fatal(err)
		}
		got[d.Key] = d
	}
	tests := []struct {
		key      string
		kind     string
		status   int
		attempts int
		source   string
		response string
	}{
		{acts[0].Key, kindRejected, 400, 1, topics.Actions + "/0/0", `{"error":"missing field lux"}`},
		{acts[1].Key, kindExhausted, 502, 3, topics.Actions + "/0/1", ""},
		{acts[2].Key, kindInvalid, 0, 0, topics.Actions + "/0/2", ""},
	}
	for _, tt := range tests {
		d, ok := got[tt.key]
		if !ok {
			t.Errorf("no dead letter for %s", tt.key)
			continue
		}
		if d.Kind != tt.kind || d.Status != tt.status || d.Attempts != tt.attempts || d.Source != tt.source || d.Response != tt.response {
			t.Errorf("%s: kind %s status %d attempts %d source %s response %q; want %s %d %d %s %q",
				tt.key, d.Kind, d.Status, d.Attempts, d.Source, d.Response, tt.kind, tt.status, tt.attempts, tt.source, tt.response)
		}
		if d.Reason == "" || (tt.kind != kindInvalid && d.Error == "") {
			t.Errorf("%s: reason %q, error %q: want both", tt.key, d.Reason, d.Error)
		}
		if string(d.Action) != string(values[tt.key]) {
			t.Errorf("%s: action %s, want the original %s", tt.key, d.Action, values[tt.key])
		}
		t.Logf("%s: %s", tt.kind, d.Reason)
	}
	waitFor(t, "the good firing delivered", func() bool { return good.count(acts[3].Key) == 1 })
	waitFor(t, "all four acknowledged", func() bool { return b.committed(t, 0) == 4 })
	if got := counterValue(e.metrics.deadLettered.WithLabelValues("http://"+badSrv.Listener.Addr().String(), kindRejected)); got != 1 {
		t.Errorf("dead_lettered{rejected} = %v, want 1", got)
	}
	if n := b.dlqEnd(t); n != 3 {
		t.Errorf("DLQ has %d records, want 3", n)
	}
}

func TestExecutorSlowTargetDoesNotDelayOthers(t *testing.T) {
	b := newBroker(t, 1)
	release := make(chan struct{})
	var mu sync.Mutex
	slowArrived, slowDone := 0, 0
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		slowArrived++
		mu.Unlock()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		mu.Lock()
		slowDone++
		mu.Unlock()
	}))
	defer slow.Close()
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	fast := newReceiver(t, nil)
	fastSrv := httptest.NewServer(fast)
	defer fastSrv.Close()

	// One partition, slow and fast firings interleaved, a slow one first.
	var acts []schemas.Action
	for i := range 40 {
		url := slow.URL
		if i%2 == 1 {
			url = fastSrv.URL
		}
		acts = append(acts, action(i, url))
	}
	b.produce(t, 1, acts...)
	o := testOptions(b, nil)
	o.TargetConcurrency = 2
	e := startExecutor(t, o)

	waitFor(t, "all 20 fast deliveries", func() bool { u, _, _ := fast.stats(); return u == 20 })
	mu.Lock()
	arrived, done := slowArrived, slowDone
	mu.Unlock()
	if done != 0 || arrived > 2 {
		t.Fatalf("slow target: %d arrived, %d done; want at most 2 (its concurrency) and none done", arrived, done)
	}
	// The resume offset stays at offset 0 (slow, not done), although 20
	// later records are done: the ledger holds those.
	if err := e.commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := b.committed(t, 0); got != 0 {
		t.Fatalf("committed offset %d while offset 0 is undelivered, want 0", got)
	}

	close(release)
	released = true
	waitFor(t, "the slow target's firings", func() bool { mu.Lock(); defer mu.Unlock(); return slowDone == 20 })
	waitFor(t, "all 40 committed", func() bool { return b.committed(t, 0) == 40 })
}

func TestExecutorRestartResumes(t *testing.T) {
	tests := []struct {
		name           string
		commitInterval time.Duration
		waitCommitted  bool // wait for the periodic commit before stopping
		kill           bool
		wantCommitted  int64 // committed offset after the first executor
		wantFirstHalf  int   // acceptances per key of the first half in total
	}{
		// Stop commits what was acknowledged: nothing is redelivered.
		{name: "stop", commitInterval: time.Hour, wantCommitted: 50, wantFirstHalf: 1},
		// A crash after a periodic commit: acknowledged records are not
		// needed again.
		{name: "kill after commit", commitInterval: 20 * time.Millisecond, waitCommitted: true, kill: true, wantCommitted: 50, wantFirstHalf: 1},
		// A crash before any commit: delivered but uncommitted records are
		// redelivered (at least once; the receiver drops the duplicates).
		{name: "kill before commit", commitInterval: time.Hour, kill: true, wantCommitted: -1, wantFirstHalf: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const n = 100
			b := newBroker(t, 1)
			rv := newReceiver(t, []byte("s"))
			var mu sync.Mutex
			firstHalfOnly := true
			index := map[string]int{}
			rv.answer = func(key string) int {
				mu.Lock()
				defer mu.Unlock()
				if firstHalfOnly && index[key] >= n/2 {
					return http.StatusServiceUnavailable
				}
				return http.StatusOK
			}
			srv := httptest.NewServer(rv)
			defer srv.Close()
			var acts []schemas.Action
			for i := range n {
				a := action(i, srv.URL)
				index[a.Key] = i
				acts = append(acts, a)
			}
			b.produce(t, 1, acts...)

			o := testOptions(b, []byte("s"))
			o.CommitInterval = tt.commitInterval
			e1 := startExecutor(t, o)
			waitFor(t, "first half delivered", func() bool { u, _, _ := rv.stats(); return u == n/2 })
			waitFor(t, "second half refused", func() bool { _, _, r := rv.stats(); return r >= n })
			if tt.waitCommitted {
				waitFor(t, "periodic commit", func() bool { return b.committed(t, 0) == n/2 })
			}
			if tt.kill {
				e1.crash()
			} else if err := e1.stop(); err != nil {
				t.Fatal(err)
			}
			if got := b.committed(t, 0); got != tt.wantCommitted {
				t.Fatalf("committed %d after the first executor, want %d", got, tt.wantCommitted)
			}

			mu.Lock()
			firstHalfOnly = false
			mu.Unlock()
			o.CommitInterval = 20 * time.Millisecond
			startExecutor(t, o)
			waitFor(t, "every firing delivered", func() bool { u, _, _ := rv.stats(); return u == n })
			waitFor(t, "all committed", func() bool { return b.committed(t, 0) == n })
			rv.checkNoBad(t)
			_, dups, _ := rv.stats()
			t.Logf("duplicates dropped by the receiver: %d", dups)
			for i, a := range acts {
				want := 1
				if i < n/2 {
					want = tt.wantFirstHalf
				}
				if got := rv.count(a.Key); got != want {
					t.Errorf("key %s accepted %d times, want %d", a.Key, got, want)
				}
			}
		})
	}
}

func TestExecutorScaleOutRebalance(t *testing.T) {
	const partitions, n = 4, 400
	b := newBroker(t, partitions)
	rv := newReceiver(t, []byte("s"))
	var mu sync.Mutex
	unavailable := true
	rv.answer = func(string) int {
		mu.Lock()
		defer mu.Unlock()
		if unavailable {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	srv := httptest.NewServer(rv)
	defer srv.Close()
	var acts []schemas.Action
	for i := range n {
		acts = append(acts, action(i, srv.URL))
	}
	b.produce(t, partitions, acts...)

	o := testOptions(b, []byte("s"))
	a := startExecutor(t, o)
	waitFor(t, "the first executor reading all partitions", func() bool { return owned(a) == partitions })
	// A second member joins while every firing is in flight (retrying):
	// the first hands over half the partitions.
	b2 := startExecutor(t, o)
	waitFor(t, "partitions split between the two", func() bool { return owned(a) == partitions/2 && owned(b2) == partitions/2 })

	mu.Lock()
	unavailable = false
	mu.Unlock()
	waitFor(t, "every firing delivered", func() bool { u, _, _ := rv.stats(); return u == n })
	rv.checkNoBad(t)
	ends, err := b.adm.ListEndOffsets(context.Background(), topics.Actions)
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(partitions) {
		end, _ := ends.Lookup(topics.Actions, p)
		waitFor(t, fmt.Sprintf("partition %d committed to its end", p), func() bool { return b.committed(t, p) == end.Offset })
	}
	target := "http://" + srv.Listener.Addr().String()
	_, dups, _ := rv.stats()
	t.Logf("delivered by the first %v, by the second %v; duplicates dropped by the receiver: %d",
		counterValue(a.metrics.delivered.WithLabelValues(target)), counterValue(b2.metrics.delivered.WithLabelValues(target)), dups)
	if counterValue(b2.metrics.delivered.WithLabelValues(target)) == 0 {
		t.Error("the second member delivered nothing")
	}
	if got := b.dlqEnd(t); got != 0 {
		t.Errorf("DLQ has %d records, want none", got)
	}
}
