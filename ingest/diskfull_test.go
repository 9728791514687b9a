package ingest

import (
	"crypto/rand"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/tmpfstest"
	"github.com/prometheus/client_golang/prometheus"
)

// With the data dir's disk full, publishes are refused with a reason
// (MQTT 5: PUBACK 0x97; 3.1.1: the connection closes) that a log line
// (one per interval) and a metric give; the node keeps serving (clients
// connect, the session store drops its writes instead of failing the
// process) and takes publishes again by itself once there is room.
func TestDiskFullRefusesPublishesAndRecovers(t *testing.T) {
	dir := tmpfstest.Mount(t, 32) // unmounted last: registered first
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	r := newRigAt(t, filepath.Join(dir, "kafka"), Options{SessionDir: filepath.Join(dir, "mqtt"), Logger: log})
	srv, addr := r.srv, r.addr

	pub := dialRaw(t, addr, "filler", true)
	payload := make([]byte, 100<<10)
	// publish sends one QoS 1 message of incompressible bytes and returns
	// its PUBACK's reason code.
	publish := func(rc *rawClient, id uint16) byte {
		t.Helper()
		rand.Read(payload)
		if _, err := rc.c.Write(rc.publish("fill/data", id, payload)); err != nil {
			t.Fatalf("publish: %v", err)
		}
		typ, body := rc.read()
		if typ != 0x40 || body[1] != byte(id) {
			t.Fatalf("want PUBACK %d, got 0x%x %v", id, typ, body)
		}
		if len(body) < 3 {
			return 0
		}
		return body[2]
	}
	var code byte
	for i := 1; i < 1000 && code == 0; i++ {
		code = publish(pub, uint16(i))
	}
	if code != 0x97 {
		t.Fatalf("MQTT 5 publish on a full disk: PUBACK 0x%x, want 0x97 (quota exceeded)", code)
	}
	for i := 0; i < 20; i++ { // more of the same: counted, logged once
		publish(pub, uint16(2000+i))
	}
	if n := counterValue(srv.metrics.refused.WithLabelValues("disk_full")); n < 21 {
		t.Errorf("disk_full refusals %v, want at least 21", n)
	}
	v3 := dialRaw(t, addr, "full-v3", false)
	rand.Read(payload)
	v3.c.Write(v3.publish("fill/v3", 1, payload))
	if typ, body := v3.read(); typ != 0 {
		t.Fatalf("MQTT 3.1.1 publish on a full disk: want the connection closed, got 0x%x %v", typ, body)
	}
	if lines := linesWith(logs.String(), "disk full", "publishes refused"); len(lines) == 0 || len(lines) > 2 {
		t.Errorf("%d log lines saying the disk is full, want 1 or 2: %q", len(lines), lines)
	}
	// The node still serves: a persistent session connects (its store
	// write is dropped, not fatal). The store reads the free space at most
	// every 250ms: a write sooner after the log filled the disk may still
	// be tried (and fit), so the connect comes after one such interval.
	time.Sleep(300 * time.Millisecond)
	if _, _, err := connectRaw(t, addr, "during-full", connectOpts{}); err != nil {
		t.Fatal(err)
	}
	waitAtLeast(t, srv.store.w.dropped.WithLabelValues("disk_full"), 1)
	for _, l := range linesWith(logs.String(), "level=WARN") {
		t.Log(l)
	}

	tmpfstest.Resize(t, dir, 96)
	deadline := time.Now().Add(30 * time.Second)
	for i := 3000; publish(pub, uint16(i)) != 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("publishes still refused with room on the disk")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitAtLeast waits (up to 10s) for c to reach min.
func waitAtLeast(t *testing.T, c prometheus.Metric, min float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for counterValue(c) < min {
		if time.Now().After(deadline) {
			t.Fatalf("counter %v, want at least %v", counterValue(c), min)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
