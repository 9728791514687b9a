package ingest

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gaugeValue reads a gauge.
func gaugeValue(c prometheus.Collector) float64 {
	var m dto.Metric
	if err := c.(prometheus.Metric).Write(&m); err != nil {
		panic(err)
	}
	return m.GetGauge().GetValue()
}

// startServer starts another ingest server on r's log with opts.
func (r *rig) startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.MQTTAddr, opts.Dev = "127.0.0.1:0", true
	srv, err := New(r.prod, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// storeKeys lists the keys of the closed session store in dir that
// mention client.
func storeKeys(t *testing.T, dir, client string) []string {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var keys []string
	for it.First(); it.Valid(); it.Next() {
		if strings.Contains(string(it.Key()), client) {
			keys = append(keys, string(it.Key()))
		}
	}
	return keys
}

// leavePersistent opens a persistent session for id subscribed to
// cmd/<id> and disconnects it.
func leavePersistent(t *testing.T, addr, id string, o connectOpts) []byte {
	t.Helper()
	rc, connack, err := connectRaw(t, addr, id, o)
	if err != nil {
		t.Fatal(err)
	}
	rc.subscribe("cmd/"+id, 1)
	rc.send(0xe0, nil)
	rc.read() // the server closes
	return connack
}

// waitGone waits until the server holds no session for id and nobody
// subscribes to cmd/<id>.
func waitGone(t *testing.T, srv *Server, id string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_, held := srv.mqtt.Clients.Get(id)
		subs := srv.mqtt.Topics.Subscribers("cmd/" + id)
		if !held && len(subs.Subscriptions) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("session %s still held (%v) or subscribed (%d) after %v", id, held, len(subs.Subscriptions), within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connackExpiry returns the Session Expiry Interval property of an MQTT 5
// CONNACK body, or -1.
func connackExpiry(body []byte) int64 {
	if len(body) < 3 {
		return -1
	}
	props := body[3:]
	for i := 0; i < len(props); {
		id := props[i]
		i++
		switch id {
		case 0x11:
			return int64(binary.BigEndian.Uint32(props[i:]))
		case 0x21, 0x22, 0x13: // two-byte properties
			i += 2
		case 0x24, 0x25, 0x28, 0x29, 0x2a: // bytes
			i++
		case 0x27:
			i += 4
		default: // a string or binary: give up
			return -1
		}
	}
	return -1
}

// Persistent sessions expire after the maximum session expiry: MQTT 3.1.1
// ones, and MQTT 5 ones whatever interval they ask for at CONNECT or at
// DISCONNECT. An expired session leaves nothing in memory (client,
// subscriptions) or in the session store.
func TestSessionExpiry(t *testing.T) {
	dir := t.TempDir()
	r := newRig(t, Options{SessionDir: dir, MaxSessionExpiry: 2 * time.Second})
	leavePersistent(t, r.addr, "p3", connectOpts{})

	rc, connack, err := connectRaw(t, r.addr, "p5", connectOpts{v5: true, expiry: 3600})
	if err != nil {
		t.Fatal(err)
	}
	if got := connackExpiry(connack); got != 2 {
		t.Errorf("CONNACK session expiry %d, want the 2s maximum", got)
	}
	rc.subscribe("cmd/p5", 1)
	// DISCONNECT asking for the longest expiry there is.
	rc.send(0xe0, []byte{0x00, 5, 0x11, 0xff, 0xff, 0xff, 0xff})
	rc.read()

	gauges := r.srv.sessionGauges() // the disconnects finish just after the closes seen
	for deadline := time.Now().Add(10 * time.Second); gaugeValue(gauges[0]) != 0 || gaugeValue(gauges[1]) != 2; {
		if time.Now().After(deadline) {
			t.Fatalf("sessions gauge: connected %v, offline %v; want 0 and 2", gaugeValue(gauges[0]), gaugeValue(gauges[1]))
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitGone(t, r.srv, "p3", 30*time.Second)
	waitGone(t, r.srv, "p5", 30*time.Second)
	if _, ack, err := connectRaw(t, r.addr, "p3", connectOpts{}); err != nil || ack[0] != 0 {
		t.Fatalf("reconnect after expiry: session present %v, err %v", ack, err)
	}
	if n := counterValue(r.srv.expiry.expired); n != 2 {
		t.Errorf("expired sessions counted %v, want 2", n)
	}
	r.srv.Close()
	for _, id := range []string{"p5", "cmd/p3"} {
		if keys := storeKeys(t, dir, id); len(keys) > 0 {
			t.Errorf("session store still holds %v", keys)
		}
	}
}

// Sessions that expired while the node was down are not loaded at the
// next start and are removed from the store; a session still valid at
// start expires from its disconnect time, with its subscriptions.
func TestSessionExpiryAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	r := newRig(t, Options{SessionDir: dir, MaxSessionExpiry: 3 * time.Second})
	leavePersistent(t, r.addr, "gone-while-down", connectOpts{})
	time.Sleep(2 * time.Second)
	leavePersistent(t, r.addr, "outlives-restart", connectOpts{v5: true, expiry: 60})
	r.srv.Close()
	time.Sleep(1500 * time.Millisecond) // the first session's 3s pass while down

	srv := r.startServer(t, Options{SessionDir: dir, MaxSessionExpiry: 3 * time.Second})
	if _, held := srv.mqtt.Clients.Get("gone-while-down"); held {
		t.Error("a session that expired while the node was down was loaded")
	}
	if subs := srv.mqtt.Topics.Subscribers("cmd/gone-while-down"); len(subs.Subscriptions) > 0 {
		t.Error("the subscription of a session that expired while the node was down was loaded")
	}
	if _, held := srv.mqtt.Clients.Get("outlives-restart"); !held {
		t.Fatal("a session still valid at start was not loaded")
	}
	waitGone(t, srv, "outlives-restart", 30*time.Second)
	srv.Close()
	for _, id := range []string{"gone-while-down", "outlives-restart"} {
		if keys := storeKeys(t, dir, id); len(keys) > 0 {
			t.Errorf("session store still holds %v", keys)
		}
	}
}

func TestSessionExpiryRule(t *testing.T) {
	s := &Server{opts: Options{MaxSessionExpiry: time.Hour}}
	tests := []struct {
		version  byte
		interval uint32
		want     time.Duration
	}{
		{4, 0, time.Hour},       // MQTT 3.1.1: the maximum, always
		{4, 10, time.Hour},      // (3.1.1 has no interval; a stray one is ignored)
		{5, 60, time.Minute},    // MQTT 5: what it asks for
		{5, 3600, time.Hour},    // up to the maximum
		{5, 1 << 31, time.Hour}, // and no further
		{5, 0xffffffff, time.Hour},
	}
	for _, tt := range tests {
		if got := s.sessionExpiry(tt.version, tt.interval); got != tt.want {
			t.Errorf("sessionExpiry(v%d, %d) = %v, want %v", tt.version, tt.interval, got, tt.want)
		}
	}
	for _, d := range []time.Duration{0, time.Millisecond, 8 * 24 * time.Hour} {
		if err := checkSessionExpiry(d); err == nil {
			t.Errorf("session expiry %v accepted", d)
		}
	}
	for _, d := range []time.Duration{time.Second, time.Hour, 7 * 24 * time.Hour} {
		if err := checkSessionExpiry(d); err != nil {
			t.Errorf("session expiry %v refused: %v", d, err)
		}
	}
}
