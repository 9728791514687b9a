// Package registrytest runs a registry over a test log for the tests of
// the packages that use one (the admin API, the API authenticator, the
// MQTT front).
package registrytest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/ingest/policy"
	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/internal/logtest"
)

// Start runs a registry over lg (a new one-partition test log when nil)
// with its view under a temporary directory and policy documents
// checked by ingest/policy; it is ready when Start returns and stops
// when the test ends.
func Start(tb testing.TB, lg *eventlog.Log) *registry.Registry {
	tb.Helper()
	if lg == nil {
		lg = logtest.Open(tb, 1)
	}
	r, err := registry.New(lg, registry.Options{
		Dir:         filepath.Join(tb.TempDir(), "registry"),
		CheckPolicy: func(doc []byte) error { _, err := policy.Parse("check", doc); return err },
		Logger:      logtest.Quiet(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("registry Run: %v", err)
		}
		if err := r.Close(); err != nil {
			tb.Errorf("registry Close: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer wcancel()
	if err := r.WaitReady(wctx); err != nil {
		tb.Fatal(err)
	}
	return r
}

// Ctx is a context for one registry call in a test.
func Ctx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}
