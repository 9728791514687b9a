package ingest

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// counterValue reads a counter.
func counterValue(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// waitCounter waits (up to 10s) for c to reach want, and fails if it
// does not or goes past it.
func waitCounter(t *testing.T, c prometheus.Metric, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for counterValue(c) < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := counterValue(c); got != want {
		t.Errorf("counter %v, want %v", got, want)
	}
}

// closedWithin reports whether the server closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	_, err := c.Read(b[:])
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Connections that never send a whole CONNECT are closed after the
// connect timeout; a client that connects meanwhile is served.
func TestConnectTimeoutClosesSilentConnections(t *testing.T) {
	r := newRig(t, Options{ConnectTimeout: 500 * time.Millisecond})
	var silent []net.Conn
	for i := 0; i < 40; i++ {
		c := dialTCP(t, r.addr)
		if i%2 == 1 {
			c.Write([]byte{0x10, 0x20, 0x00}) // the start of a CONNECT, never finished
		}
		silent = append(silent, c)
	}
	good := client(t, r.addr, "patient", false)
	for i, c := range silent {
		if !closedWithin(c, 20*time.Second) {
			t.Fatalf("connection %d without CONNECT still open", i)
		}
	}
	// Counted once mochi's handling returned, just after the close.
	waitCounter(t, r.srv.metrics.refused.WithLabelValues("connect_timeout"), 40)
	// A client that sent its CONNECT in time is not held to the timeout.
	time.Sleep(time.Second)
	if tok := good.Publish("patient/x", 1, false, "{}"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connected client after the connect timeout: %v", tok.Error())
	}
}

// Beyond MaxConnections a new connection is closed at once; existing
// clients keep publishing, and room frees as connections close.
func TestConnectionCap(t *testing.T) {
	const limit = 12
	r := newRig(t, Options{MaxConnections: limit, ConnectTimeout: time.Minute})
	clients := make([]*rawClient, 0, limit)
	for i := 0; i < limit/2; i++ {
		clients = append(clients, dialRaw(t, r.addr, fmt.Sprintf("capped-%d", i), i%2 == 0))
	}
	var silent []net.Conn
	for i := 0; i < limit/2; i++ {
		silent = append(silent, dialTCP(t, r.addr))
	}
	// The listener counts a connection once it accepted it: wait until
	// all of them are counted before going past the cap.
	deadline := time.Now().Add(20 * time.Second)
	for r.srv.listener.open.Load() < limit {
		if time.Now().After(deadline) {
			t.Fatalf("open connections %d, want %d", r.srv.listener.open.Load(), limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 0; i < 5; i++ {
		if extra := dialTCP(t, r.addr); !closedWithin(extra, 10*time.Second) {
			t.Fatalf("connection %d beyond the cap of %d was not closed", i, limit)
		}
	}
	waitCounter(t, r.srv.metrics.refused.WithLabelValues("connection_limit"), 5)
	for i, rc := range clients {
		rc.c.Write(rc.publish("capped/x", uint16(i+1), []byte(`{}`)))
		if typ, body := rc.read(); typ != 0x40 || body[1] != byte(i+1) {
			t.Fatalf("client %d at the cap: want PUBACK, got 0x%x %v", i, typ, body)
		}
	}
	for _, c := range silent {
		c.Close()
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		rc, _, err := connectRaw(t, r.addr, "after-cap", connectOpts{clean: true})
		if err == nil && rc.alive() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no room after connections closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDefaultMaxConnections(t *testing.T) {
	if n := defaultMaxConnections(); n != 0 && n < 64 {
		t.Fatalf("defaultMaxConnections() = %d", n)
	}
}

// Close does not wait for connections that never sent a CONNECT.
func TestCloseWithSilentConnections(t *testing.T) {
	r := newRig(t, Options{ConnectTimeout: time.Hour})
	for i := 0; i < 10; i++ {
		dialTCP(t, r.addr)
	}
	for r.srv.listener.open.Load() < 10 {
		time.Sleep(10 * time.Millisecond)
	}
	done := make(chan struct{})
	go func() {
		r.srv.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Close still waits for connections that never sent a CONNECT")
	}
}

// histogramCount reads a histogram's sample count.
func histogramCount(h prometheus.Metric) uint64 {
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		panic(err)
	}
	return m.GetHistogram().GetSampleCount()
}
