package ingest

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRateLog(t *testing.T) {
	t0 := time.Unix(1000, 0)
	rl := newRateLog(10 * time.Second)
	steps := []struct {
		key        string
		at         time.Duration
		ok         bool
		suppressed int
	}{
		{"a", 0, true, 0},
		{"a", time.Second, false, 0},
		{"b", time.Second, true, 0}, // keys are independent
		{"a", 2 * time.Second, false, 0},
		{"a", 10 * time.Second, true, 2}, // the interval passed: the held-back count
		{"a", 11 * time.Second, false, 0},
		{"a", 30 * time.Second, true, 1},
		{"b", 30 * time.Second, true, 0},
	}
	for i, s := range steps {
		ok, n := rl.allow(s.key, t0.Add(s.at))
		if ok != s.ok || n != s.suppressed {
			t.Errorf("step %d (%s at %v): allow = %v, %d; want %v, %d", i, s.key, s.at, ok, n, s.ok, s.suppressed)
		}
	}
}

// The map of keys stays bounded: keys quiet for an interval are forgotten.
func TestRateLogSweeps(t *testing.T) {
	rl := newRateLog(time.Second)
	t0 := time.Unix(1000, 0)
	for i := 0; i < 10000; i++ {
		rl.allow(fmt.Sprint("client-", i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	if len(rl.keys) > 4096+1 {
		t.Fatalf("%d keys kept", len(rl.keys))
	}
}

func TestQuietHandler(t *testing.T) {
	var buf bytes.Buffer
	log := newQuietLogger(slog.New(slog.NewTextHandler(&buf, nil)), time.Hour).With("component", "mqtt")
	for i := 0; i < 100; i++ {
		log.Warn("client store quota reached", "client", "c1")
		log.Warn("client store quota reached", "client", "c2")
		log.Info("added hook", "hook", "x") // below warnings: every line
	}
	out := buf.String()
	if n := strings.Count(out, "client=c1"); n != 1 {
		t.Errorf("%d lines for c1, want 1", n)
	}
	if n := strings.Count(out, "client=c2"); n != 1 {
		t.Errorf("%d lines for c2, want 1", n)
	}
	if n := strings.Count(out, "added hook"); n != 100 {
		t.Errorf("%d info lines, want 100", n)
	}
	if !strings.Contains(out, "subscriber does not acknowledge") || !strings.Contains(out, "component=mqtt") {
		t.Errorf("warning not explained or attributes lost:\n%s", out)
	}
}
