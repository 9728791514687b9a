package ingest

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// linesWith returns the log lines that contain every one of words.
func linesWith(log string, words ...string) []string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		ok := l != ""
		for _, w := range words {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// A subscriber that stops reading loses messages beyond what the broker
// holds for it: the drops are counted in a metric and logged once per
// client per interval with their count, not once per message.
func TestStalledSubscriberDropsRateLimited(t *testing.T) {
	var logs syncBuffer
	r := newRig(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	sub := dialRaw(t, r.addr, "stalled-sub", false)
	sub.subscribe("flood/#", 1)
	if tc, ok := sub.c.(*net.TCPConn); ok {
		tc.SetReadBuffer(4096)
	}
	// From here on the subscriber reads nothing and acknowledges nothing.

	pub := dialRaw(t, r.addr, "flooder", false)
	const n = 30000
	acked := make(chan int)
	go func() {
		got := 0
		for got < n {
			typ, _ := pub.read()
			if typ == 0 {
				break
			}
			if typ == 0x40 {
				got++
			}
		}
		acked <- got
	}()
	var batch []byte
	for i := 0; i < n; i++ {
		batch = append(batch, pub.publish("flood/x", uint16(i%65535+1), []byte(`{"v":1}`))...)
		if len(batch) > 32<<10 || i == n-1 {
			pub.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := pub.c.Write(batch); err != nil {
				t.Fatalf("publish: %v", err)
			}
			batch = batch[:0]
		}
	}
	if got := <-acked; got != n {
		t.Fatalf("publisher acknowledged %d of %d", got, n)
	}
	dropped := counterValue(r.srv.drops.inflightFull) + counterValue(r.srv.drops.queueFull)
	if dropped < n/4 {
		t.Fatalf("dropped counted %v for a subscriber that read nothing of %d messages", dropped, n)
	}
	lines := linesWith(logs.String(), "stalled-sub", "level=WARN")
	if len(lines) == 0 || len(lines) > 3 {
		t.Fatalf("%d WARN lines about the stalled subscriber for %v drops, want 1 to 3; first: %q", len(lines), dropped, lines[:min(len(lines), 3)])
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.srv.Collectors()...)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == "iotpipe_ingest_dropped_total" && len(f.GetMetric()) != 2 {
			t.Errorf("iotpipe_ingest_dropped_total has %d series, want 2 (inflight_full, queue_full)", len(f.GetMetric()))
		}
	}
	t.Logf("%v drops, %d log lines: %s", dropped, len(lines), lines[0])
}
