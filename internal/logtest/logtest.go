// Package logtest starts the embedded event log for tests: a real Kafka
// protocol broker (kfake over TCP on a free port) with its data in the
// test's temporary directory and iotpipe's topics created.
package logtest

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/iotpipe/iotpipe/internal/eventlog"
)

// Open starts an embedded log whose topics have partitions partitions;
// it is closed when the test ends.
func Open(tb testing.TB, partitions int32) *eventlog.Log {
	tb.Helper()
	ctx := context.Background()
	l, err := eventlog.Open(ctx, eventlog.Options{DataDir: tb.TempDir(), Port: -1, Partitions: partitions, Logger: Quiet()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(l.Close)
	if err := l.EnsureTopics(ctx); err != nil {
		tb.Fatal(err)
	}
	return l
}

// Quiet is a logger that writes nothing, for runtimes under test.
func Quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
