package ingest

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
)

// A client that never reads its socket must not slow the others, and the
// publishes it has on their way stay bounded.
func TestStalledClientDoesNotSlowOthers(t *testing.T) {
	r := newRig(t, Options{MaxInFlight: 64})

	stalled := dialRaw(t, r.addr, "stalled", false)
	if tc, ok := stalled.c.(*net.TCPConn); ok {
		tc.SetReadBuffer(4096)
	}
	var sent atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // publish forever, never read a PUBACK
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			stalled.c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
			if _, err := stalled.c.Write(stalled.publish("stall/x", uint16(i%65535+1), []byte(`{"v":1}`))); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue // TCP pushed back: the server stopped reading us
				}
				return
			}
			sent.Add(1)
		}
	}()

	// Wait until the stalled client is pushed back: its sends stop growing
	// for a second (one quiet 300ms window was not enough on a loaded
	// machine: the server, starved of CPU, had only paused reading).
	var plateau int64
	for i, still := 0, 0; i < 200 && plateau == 0; i++ {
		before := sent.Load()
		time.Sleep(300 * time.Millisecond)
		switch after := sent.Load(); {
		case after != before || after == 0:
			still = 0
		case still < 3:
			still++
		default:
			plateau = after
		}
	}
	if plateau == 0 {
		t.Fatalf("stalled client was never pushed back (sent %d)", sent.Load())
	}

	// Meanwhile others publish and every publish is acknowledged.
	const clients, each = 5, 1000
	var others sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		others.Add(1)
		go func(c int) {
			defer others.Done()
			cl := client(t, r.addr, fmt.Sprintf("healthy-%d", c), false)
			defer cl.Disconnect(10)
			for i := 0; i < each; i++ {
				tok := cl.Publish("healthy/data", 1, false, `{"v":2}`)
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					errs <- fmt.Errorf("client %d publish %d not acknowledged: %v", c, i, tok.Error())
					return
				}
			}
		}(c)
	}
	others.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	// The stalled client is still pushed back: nothing more of it reaches
	// the log while it does not read (its in-flight stays bounded).
	if now := sent.Load(); now != plateau {
		t.Fatalf("stalled client kept sending (%d -> %d) while not reading", plateau, now)
	}
	count := func() (stalledLogged, healthy int) {
		for _, rec := range r.readAll(t, r.log.Topics().Events, clients*each) {
			env, _ := schemas.DecodeEnvelope(rec.Headers)
			if env.Type != schemas.EventPublish {
				continue
			}
			if env.ClientID == "stalled" {
				stalledLogged++
			} else {
				healthy++
			}
		}
		return
	}
	first, healthy := count()
	time.Sleep(time.Second)
	second, _ := count()
	if healthy != clients*each {
		t.Fatalf("healthy publishes logged %d, want %d", healthy, clients*each)
	}
	if first != second || int64(first) > plateau {
		t.Fatalf("stalled client's logged publishes grew %d -> %d (sent %d) while it was not reading", first, second, plateau)
	}
	close(stop)
	stalled.c.Close()
	wg.Wait()
	t.Logf("stalled client: %d publishes sent before TCP pushed back, %d reached the log; %d healthy publishes acknowledged meanwhile", plateau, first, healthy)
}
