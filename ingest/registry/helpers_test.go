package registry

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// counter reads a Prometheus counter.
func counter(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	noErr(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

// node is a running Registry over a test log, stopped at the test's end.
type node struct {
	*Registry
	stop func()
}

// startNode runs a registry with its view in dir; setup, if any, runs
// before Run.
func startNode(t testing.TB, lg *eventlog.Log, dir string, opts Options, setup ...func(*Registry)) *node {
	t.Helper()
	opts.Dir = dir
	if opts.Logger == nil {
		opts.Logger = logtest.Quiet()
	}
	r, err := New(lg, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range setup {
		f(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	n := &node{Registry: r}
	n.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	t.Cleanup(n.stop)
	wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer wcancel()
	if err := r.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	return n
}

func newNode(t testing.TB, lg *eventlog.Log) *node {
	t.Helper()
	return startNode(t, lg, filepath.Join(t.TempDir(), "registry"), Options{})
}

// testCtx bounds one registry call in a test (generous: the machine is
// shared and busy).
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func must[T any](t testing.TB) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func noErr(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t testing.TB, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
}

// dump is everything a view holds, as JSON, for comparing two views.
func dump(t testing.TB, r *Registry) string {
	t.Helper()
	var all []any
	add := func(v any, err error) {
		t.Helper()
		noErr(t, err)
		all = append(all, v)
	}
	add(r.ListThings(ListOptions{}))
	add(r.ListCertificates(ListOptions{}))
	add(r.ListCAs(ListOptions{}))
	add(r.ListPolicies(ListOptions{}))
	add(r.ListTokens(ListOptions{}))
	certs, err := r.ListCertificates(ListOptions{})
	noErr(t, err)
	for _, c := range certs {
		add(r.PrincipalPolicies(c.ID))
		add(r.PrincipalThings(c.ID))
	}
	b, err := json.Marshal(all)
	noErr(t, err)
	return string(b)
}

// eventually polls cond until it holds or a long deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 60s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const allowAll = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}`

// testCA makes a CA (iotpipe's kind) in a temporary directory.
func testCA(t testing.TB) *pki.CA {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(t.TempDir(), pki.CAOptions{CommonName: "device CA", Logger: logtest.Quiet()})
	noErr(t, err)
	return ca
}

func issue(t testing.TB, ca *pki.CA, cn string) *pki.Issued {
	t.Helper()
	is, err := ca.Issue(pki.IssueRequest{CommonName: cn})
	noErr(t, err)
	return is
}

// spread runs fn count times at once, alternately on a and b, and waits.
func spread(count int, a, b *node, fn func(i int, n *node)) {
	var wg sync.WaitGroup
	for i := range count {
		n := a
		if i%2 == 1 {
			n = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(i, n)
		}()
	}
	wg.Wait()
}
