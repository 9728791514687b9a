package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// script answers requests with the given statuses in turn (the last one
// forever) and records what it received.
type script struct {
	mu       sync.Mutex
	statuses []int
	header   http.Header // extra response headers
	got      []*http.Request
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, r)
	st := s.statuses[min(len(s.got)-1, len(s.statuses)-1)]
	for k, v := range s.header {
		w.Header()[k] = v
	}
	w.WriteHeader(st)
	_, _ = w.Write([]byte("status body"))
}

// testDelivery runs a deliverer's attempts to the end (as the executor
// does, without its queues) with a fake clock that waiting advances, so
// retries are checked without waiting.
type testDelivery struct {
	*deliverer
	sleep func(ctx context.Context, w time.Duration) error
}

func (d *testDelivery) deliver(ctx context.Context, req *request) outcome {
	var out outcome
	for {
		wait, done := d.try(ctx, req, &out)
		if done {
			return out
		}
		if err := d.sleep(ctx, wait); err != nil {
			out.kind, out.err = kindCanceled, err
			return out
		}
	}
}

func testDeliverer(p policy) (*testDelivery, *[]time.Duration) {
	d := newDeliverer(&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, p, nil)
	now := time.Unix(1_700_000_000, 0)
	var waits []time.Duration
	d.now = func() time.Time { return now }
	td := &testDelivery{deliverer: d, sleep: func(ctx context.Context, w time.Duration) error {
		waits = append(waits, w)
		now = now.Add(w)
		return ctx.Err()
	}}
	d.rnd = func(n int64) int64 { return n - 1 } // the top of the jitter range
	return td, &waits
}

func testPolicy() policy {
	return policy{timeout: 5 * time.Second, maxAttempts: 5, maxElapsed: time.Hour,
		initial: 100 * time.Millisecond, max: time.Second, maxRetryAfter: time.Minute}
}

func TestDeliverOutcomes(t *testing.T) {
	tests := []struct {
		name         string
		statuses     []int
		header       http.Header
		policy       func(*policy)
		wantKind     string
		wantAttempts int
		wantStatus   int
		wantWaits    []time.Duration
	}{
		{name: "ok at once", statuses: []int{200}, wantKind: kindDelivered, wantAttempts: 1, wantStatus: 200},
		{name: "204 is delivered", statuses: []int{204}, wantKind: kindDelivered, wantAttempts: 1, wantStatus: 204},
		{name: "503 twice then ok", statuses: []int{503, 503, 200}, wantKind: kindDelivered, wantAttempts: 3, wantStatus: 200,
			wantWaits: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}},
		{name: "408 is retried", statuses: []int{408, 202}, wantKind: kindDelivered, wantAttempts: 2, wantStatus: 202,
			wantWaits: []time.Duration{100 * time.Millisecond}},
		{name: "400 is final", statuses: []int{400}, wantKind: kindRejected, wantAttempts: 1, wantStatus: 400},
		{name: "404 is final", statuses: []int{404}, wantKind: kindRejected, wantAttempts: 1, wantStatus: 404},
		{name: "redirect is not followed", statuses: []int{302}, header: http.Header{"Location": {"/elsewhere"}},
			wantKind: kindRejected, wantAttempts: 1, wantStatus: 302},
		{name: "500 forever exhausts attempts", statuses: []int{500}, wantKind: kindExhausted, wantAttempts: 5, wantStatus: 500,
			wantWaits: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}},
		{name: "backoff capped at max", statuses: []int{502}, policy: func(p *policy) { p.maxAttempts = 7 }, wantKind: kindExhausted, wantAttempts: 7, wantStatus: 502,
			wantWaits: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}},
		{name: "max elapsed stops before a wait that passes it", statuses: []int{503}, policy: func(p *policy) { p.maxAttempts = 100; p.maxElapsed = 650 * time.Millisecond },
			wantKind: kindExhausted, wantAttempts: 3, wantStatus: 503, wantWaits: []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}},
		{name: "429 honours Retry-After seconds", statuses: []int{429, 200}, header: http.Header{"Retry-After": {"7"}},
			wantKind: kindDelivered, wantAttempts: 2, wantStatus: 200, wantWaits: []time.Duration{7 * time.Second}},
		{name: "Retry-After capped", statuses: []int{503, 200}, header: http.Header{"Retry-After": {"3600"}},
			wantKind: kindDelivered, wantAttempts: 2, wantStatus: 200, wantWaits: []time.Duration{time.Minute}},
		{name: "Retry-After on 500 ignored", statuses: []int{500, 200}, header: http.Header{"Retry-After": {"9"}},
			wantKind: kindDelivered, wantAttempts: 2, wantStatus: 200, wantWaits: []time.Duration{100 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &script{statuses: tt.statuses, header: tt.header}
			srv := httptest.NewServer(s)
			defer srv.Close()
			p := testPolicy()
			if tt.policy != nil {
				tt.policy(&p)
			}
			d, waits := testDeliverer(p)
			out := d.deliver(context.Background(), &request{key: "k", url: srv.URL + "/hook", target: "t", body: []byte(`{}`)})
			if out.kind != tt.wantKind || out.attempts != tt.wantAttempts || out.status != tt.wantStatus {
				t.Fatalf("outcome = %s after %d attempts, status %d (err %v); want %s after %d, status %d",
					out.kind, out.attempts, out.status, out.err, tt.wantKind, tt.wantAttempts, tt.wantStatus)
			}
			if len(s.got) != tt.wantAttempts {
				t.Errorf("server saw %d requests, want %d", len(s.got), tt.wantAttempts)
			}
			if len(*waits) != len(tt.wantWaits) {
				t.Fatalf("waits = %v, want %v", *waits, tt.wantWaits)
			}
			for i := range tt.wantWaits {
				if (*waits)[i] != tt.wantWaits[i] {
					t.Fatalf("waits = %v, want %v", *waits, tt.wantWaits)
				}
			}
			if out.kind != kindDelivered && out.body != "status body" {
				t.Errorf("kept body %q, want the response body", out.body)
			}
		})
	}
}

func TestDeliverRequestShape(t *testing.T) {
	s := &script{statuses: []int{503, 200}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	d, _ := testDeliverer(testPolicy())
	body := []byte(`{"thing":"gh-1"}`)
	req := &request{key: "0/7/r/0", url: srv.URL, target: "t", body: body, secret: []byte("sec"),
		headers: http.Header{"Authorization": {"Bearer x"}}}
	if out := d.deliver(context.Background(), req); out.kind != kindDelivered {
		t.Fatalf("outcome %s: %v", out.kind, out.err)
	}
	for i, r := range s.got {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("attempt %d: %s with Content-Type %q", i, r.Method, r.Header.Get("Content-Type"))
		}
		if got := r.Header.Get(HeaderIdempotencyKey); got != "0/7/r/0" {
			t.Errorf("attempt %d: Idempotency-Key %q", i, got)
		}
		if r.Header.Get("Authorization") != "Bearer x" {
			t.Errorf("attempt %d: configured header missing", i)
		}
		if err := Verify([]byte("sec"), r.Header.Get(HeaderSignature), r.Header.Get(HeaderTimestamp), body); err != nil {
			t.Errorf("attempt %d: signature: %v", i, err)
		}
	}
}

func TestDeliverUnsignedWithoutSecret(t *testing.T) {
	s := &script{statuses: []int{200}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	d, _ := testDeliverer(testPolicy())
	d.deliver(context.Background(), &request{key: "k", url: srv.URL, target: "t", body: []byte("1")})
	if h := s.got[0].Header; h.Get(HeaderSignature) != "" || h.Get(HeaderTimestamp) != "" {
		t.Fatalf("unsigned request carries %q / %q", h.Get(HeaderSignature), h.Get(HeaderTimestamp))
	}
}

func TestDeliverNetworkErrorsAreRetried(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // connection refused from now on
	p := testPolicy()
	p.maxAttempts = 3
	d, waits := testDeliverer(p)
	out := d.deliver(context.Background(), &request{key: "k", url: url, target: "t", body: []byte("1")})
	if out.kind != kindExhausted || out.attempts != 3 || out.status != 0 || out.err == nil || len(*waits) != 2 {
		t.Fatalf("outcome %s after %d attempts, status %d, err %v, waits %v", out.kind, out.attempts, out.status, out.err, *waits)
	}
}

func TestDeliverTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	p := testPolicy()
	p.timeout = 50 * time.Millisecond
	p.maxAttempts = 2
	d, _ := testDeliverer(p)
	out := d.deliver(context.Background(), &request{key: "k", url: srv.URL, target: "t", body: []byte("1")})
	if out.kind != kindExhausted || out.attempts != 2 || !strings.Contains(out.err.Error(), "no response within") {
		t.Fatalf("outcome %s after %d attempts: %v", out.kind, out.attempts, out.err)
	}
}

func TestDeliverCanceled(t *testing.T) {
	s := &script{statuses: []int{503}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	d, _ := testDeliverer(testPolicy())
	ctx, cancel := context.WithCancel(context.Background())
	d.sleep = func(context.Context, time.Duration) error { cancel(); return context.Canceled }
	out := d.deliver(ctx, &request{key: "k", url: srv.URL, target: "t", body: []byte("1")})
	if out.kind != kindCanceled || out.attempts != 1 {
		t.Fatalf("outcome %s after %d attempts, want canceled after 1", out.kind, out.attempts)
	}
}

func TestBackoffFullJitterBounds(t *testing.T) {
	p := policy{initial: 100 * time.Millisecond, max: 2 * time.Second}
	for n, ceil := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: 1600 * time.Millisecond, 6: 2 * time.Second, 60: 2 * time.Second} {
		var gotCeil int64
		p.backoff(n, func(k int64) int64 { gotCeil = k - 1; return 0 })
		if time.Duration(gotCeil) != ceil {
			t.Errorf("attempt %d: jitter range [0, %v], want [0, %v]", n, time.Duration(gotCeil), ceil)
		}
		if w := p.backoff(n, func(k int64) int64 { return 0 }); w != 0 {
			t.Errorf("attempt %d: bottom of the range = %v, want 0 (full jitter)", n, w)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"120", 2 * time.Minute, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"Sun, 22 Nov 2026 12:00:30 GMT", 30 * time.Second, true},
		{"Sun, 22 Nov 2026 11:00:00 GMT", 0, true},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
