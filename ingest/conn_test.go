package ingest

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// writers counts the goroutines running a connection's PUBACK writer.
func writers() int {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	return strings.Count(b.String(), "ingest.(*conn).writer(")
}

// connOf returns the connection of client id, waiting for it: mochi
// sends the CONNACK before the hook that makes the connection runs.
func (s *Server) connOf(t *testing.T, id string) *conn {
	t.Helper()
	var c *conn
	waitFor(t, "the connection of "+id, func() bool {
		cl, ok := s.mqtt.Clients.Get(id)
		if !ok {
			return false
		}
		v, ok := s.conns.Load(cl)
		if ok {
			c = v.(*conn)
		}
		return ok
	})
	return c
}

// expectPubacks reads a PUBACK of every id from first to last, in order.
func (rc *rawClient) expectPubacks(first, last uint16) {
	rc.t.Helper()
	for id := first; id <= last; id++ {
		typ, body := rc.read()
		if typ != 0x40 || len(body) < 2 || uint16(body[0])<<8|uint16(body[1]) != id || (len(body) > 2 && body[2] != 0) {
			rc.t.Fatalf("want PUBACK %d, got 0x%x %v", id, typ, body)
		}
	}
}

// A connection's PUBACK writer exits once the connection has been quiet
// for the quiet period and starts again on its next publish: a
// connection that publishes, goes quiet, then publishes again gets every
// PUBACK, in order, whether the next publish comes long after the writer
// exited or just as it is exiting.
func TestWriterRestartsAfterQuiet(t *testing.T) {
	const quiet = 20 * time.Millisecond
	r := newRig(t, Options{writerIdle: quiet})
	for _, v5 := range []bool{false, true} {
		id := fmt.Sprintf("quiet-v5-%v", v5)
		rc := dialRaw(t, r.addr, id, v5)
		c := r.srv.connOf(t, id)
		exited := func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return !c.writing
		}
		rng := rand.New(rand.NewPCG(1, 2))
		var next uint16 = 1
		for round := range 60 {
			k := uint16(1 + rng.IntN(8))
			var burst []byte
			for i := range k {
				burst = append(burst, rc.publish("quiet/t", next+i, []byte(fmt.Sprintf(`{"round":%d}`, round)))...)
			}
			if _, err := rc.c.Write(burst); err != nil {
				t.Fatal(err)
			}
			rc.expectPubacks(next, next+k-1)
			next += k
			if round%5 == 0 {
				waitFor(t, "the writer to exit", exited)
			} else {
				// Around the quiet period: some publishes race the
				// writer's exit.
				time.Sleep(time.Duration(rng.IntN(int(2 * quiet))))
			}
		}
	}
}

// Idle connections hold mochi's two goroutines each (its read and write
// loops) and no PUBACK writer; a publish after that is acknowledged, and
// the connections' disconnected events are still logged once they
// close.
func TestIdleConnectionsHoldNoWriter(t *testing.T) {
	const n = 50
	r := newRig(t, Options{writerIdle: 100 * time.Millisecond})
	waitFor(t, "the server to settle", func() bool { return writers() == 0 })
	base := runtime.NumGoroutine()
	clients := make([]*rawClient, n)
	for i := range clients {
		rc := dialRaw(t, r.addr, fmt.Sprintf("idle-%d", i), i%2 == 0)
		rc.c.Write(rc.publish("idle/t", 1, []byte(`{"v":1}`)))
		rc.expectPubacks(1, 1)
		clients[i] = rc
	}
	waitFor(t, "the idle connections' writers to exit", func() bool { return writers() == 0 })
	if grown := runtime.NumGoroutine() - base; grown > 2*n+10 {
		t.Fatalf("%d idle connections grew the goroutines by %d, want about %d (mochi's read and write loops)", n, grown, 2*n)
	}
	logged := counterValue(r.srv.metrics.logged)
	for _, rc := range clients {
		rc.c.Write(rc.publish("idle/t", 2, []byte(`{"v":2}`)))
	}
	for _, rc := range clients {
		rc.expectPubacks(2, 2)
	}
	waitFor(t, "the writers to exit again", func() bool { return writers() == 0 })
	for _, rc := range clients {
		rc.c.Close()
	}
	waitFor(t, "the disconnected events in the log", func() bool { return counterValue(r.srv.metrics.logged) >= logged+2*n })
	waitFor(t, "the closed connections' writers to exit", func() bool { return writers() == 0 })
}
