package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// events records what the stages and closers of a test did, in order.
type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log = append(e.log, s)
}

func (e *events) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.Join(e.log, " ")
}

// stageFor is a stage that waits for its context, takes d to drain and
// records its end.
func stageFor(ev *events, name string, d time.Duration) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(d)
		ev.add(name)
		return nil
	}
}

func closerFor(ev *events, name string) func(context.Context) error {
	return func(context.Context) error { ev.add(name); return nil }
}

func quietLifecycle() *lifecycle { return newLifecycle(slog.New(slog.NewTextHandler(io.Discard, nil))) }

// Phases stop in order whatever the order stages were added in; a
// phase's closers run after all its stages returned, newest first.
func TestLifecycleStopsPhasesInOrder(t *testing.T) {
	ev := &events{}
	lc := quietLifecycle()
	lc.onStop(storePhase, "log", closerFor(ev, "close-log"))
	lc.onStop(storePhase, "clickhouse", closerFor(ev, "close-clickhouse"))
	lc.run(sinkPhase, "sink", stageFor(ev, "sink", 30*time.Millisecond))
	lc.onStop(processPhase, "state", closerFor(ev, "close-state"))
	lc.run(processPhase, "processors", stageFor(ev, "processors", 50*time.Millisecond))
	lc.onStop(ingestPhase, "producer", closerFor(ev, "flush"))
	lc.run(acceptPhase, "mqtt", stageFor(ev, "mqtt", 20*time.Millisecond))
	lc.run(acceptPhase, "http", stageFor(ev, "http", 0))
	if err := lc.stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	want := "http mqtt flush processors close-state sink close-clickhouse close-log"
	if got := ev.String(); got != want {
		t.Fatalf("stop order:\n got %s\nwant %s", got, want)
	}
}

// Past the deadline stop names what still runs and skips the later
// phases' closers (their users may still run); the later phases'
// stages are told to stop.
func TestLifecycleDrainDeadline(t *testing.T) {
	ev := &events{}
	lc := quietLifecycle()
	lc.onStop(storePhase, "log", closerFor(ev, "close-log"))
	later := make(chan struct{})
	lc.run(storePhase, "store stage", func(ctx context.Context) error { <-ctx.Done(); close(later); return nil })
	lc.onStop(processPhase, "state", closerFor(ev, "close-state"))
	hang := make(chan struct{})
	defer close(hang)
	lc.run(processPhase, "processors", func(ctx context.Context) error { <-hang; return nil })
	lc.run(processPhase, "rules watcher", stageFor(ev, "watcher", 0))
	start := time.Now()
	err := lc.stop(300 * time.Millisecond)
	if err == nil {
		t.Fatal("stop past the deadline returned nil")
	}
	for _, s := range []string{"drain did not finish within 300ms", "--drain-timeout", "process phase", "[processors]"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stop took %s with a 300ms deadline", took)
	}
	if got := ev.String(); got != "watcher" {
		t.Errorf("events %q: want only the watcher's end (no closer of a phase that did not finish, or after it)", got)
	}
	select {
	case <-later:
	case <-time.After(5 * time.Second):
		t.Error("the later phases' stages were not told to stop")
	}
}

// A stage that ends on its own before its phase stops reports why on
// failed; one that fails while draining makes stop return its error.
func TestLifecycleStageErrors(t *testing.T) {
	lc := quietLifecycle()
	lc.run(sinkPhase, "sink", func(context.Context) error { return errors.New("clickhouse gone") })
	lc.run(processPhase, "processors", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	lc.run(acceptPhase, "http", func(ctx context.Context) error { <-ctx.Done(); return errors.New("close: boom") })
	select {
	case err := <-lc.failed:
		if err.Error() != "sink: clickhouse gone" {
			t.Errorf("failed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no failure reported")
	}
	err := lc.stop(5 * time.Second)
	if err == nil || err.Error() != "http: close: boom" {
		t.Errorf("stop: %v, want the http stage's drain error only (context.Canceled is a clean stop)", err)
	}
}
