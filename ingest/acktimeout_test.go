package ingest

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// heldLog is a broker (kfake over TCP) that the test can make stop
// answering produce requests: while held, a produce request is read and
// left unanswered (the connection stays up) until release.
type heldLog struct {
	c    *kfake.Cluster
	mu   sync.Mutex
	held chan struct{} // non-nil while holding; closed by release
}

func newHeldLog(t *testing.T) *heldLog {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, schemas.DefaultTopics().All()...))
	if err != nil {
		t.Fatal(err)
	}
	h := &heldLog{c: c}
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		h.mu.Lock()
		ch := h.held
		h.mu.Unlock()
		if ch != nil {
			c.SleepControl(func() { <-ch })
		}
		return nil, nil, false // then the broker answers as usual
	})
	t.Cleanup(func() {
		h.release()
		c.Close()
	})
	return h
}

func (h *heldLog) hold() {
	h.mu.Lock()
	if h.held == nil {
		h.held = make(chan struct{})
	}
	h.mu.Unlock()
}

func (h *heldLog) release() {
	h.mu.Lock()
	if h.held != nil {
		close(h.held)
		h.held = nil
	}
	h.mu.Unlock()
}

// serve starts an ingest server producing to the held log with
// ProducerOpts plus extra, and returns it with its producer. The producer
// never gives up on a record by itself while the test holds the log (its
// request and delivery timeouts are minutes): only the server's
// AckTimeout answers the clients.
func (h *heldLog) serve(t *testing.T, opts Options, extra ...kgo.Opt) (*Server, *kgo.Client) {
	t.Helper()
	kopts := append([]kgo.Opt{kgo.SeedBrokers(h.c.ListenAddrs()...)}, ProducerOpts()...)
	kopts = append(kopts, kgo.RecordDeliveryTimeout(5*time.Minute), kgo.RequestTimeoutOverhead(5*time.Minute))
	prod, err := kgo.NewClient(append(kopts, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	return startServer(t, prod, opts), prod
}

// waitFor polls cond until it holds, failing after a generous deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A connection that went idle after its last publish still hears, at
// the ack timeout, that the log did not take a publish: the writer is
// woken for the deadline, not only by the log's answers.
func TestAckTimeoutOnIdleConnection(t *testing.T) {
	h := newHeldLog(t)
	const timeout = 500 * time.Millisecond
	srv, _ := h.serve(t, Options{AckTimeout: timeout})
	rc := dialRaw(t, srv.MQTTAddr().String(), "idle-v5", true)
	waitFor(t, "the connected event in the log", func() bool { return counterValue(srv.metrics.logged) >= 1 })
	// Let the connection's writer go idle past a whole timeout with
	// nothing in flight.
	time.Sleep(3 * timeout)
	h.hold()
	rc.c.Write(rc.publish("idle/t", 5, []byte(`{"v":1}`)))
	rc.c.SetReadDeadline(time.Now().Add(60 * time.Second))
	typ, body := rc.readNoDeadline()
	if typ != 0x40 || len(body) < 3 || body[1] != 5 || body[2] < 0x80 {
		t.Fatalf("want PUBACK 5 with a failure reason code while the log does not answer, got 0x%x %v", typ, body)
	}
}

// A publish answered as failed at the ack timeout keeps its in-flight
// slot until the log answers it, so a client that goes on publishing
// cannot pile records up in the producer: what one connection holds
// stays bounded by MaxInFlight. Once the log answers, the rest go
// through and are acknowledged.
func TestAckTimeoutKeepsSlotsUntilTheLogAnswers(t *testing.T) {
	h := newHeldLog(t)
	const inflight, total = 4, 24
	srv, prod := h.serve(t, Options{AckTimeout: 300 * time.Millisecond, MaxInFlight: inflight})
	rc := dialRaw(t, srv.MQTTAddr().String(), "grower", true)
	waitFor(t, "the connected event in the log", func() bool { return counterValue(srv.metrics.logged) >= 1 })
	h.hold()
	var burst []byte
	for i := 1; i <= total; i++ {
		burst = append(burst, rc.publish("grow/t", uint16(i), []byte(fmt.Sprintf(`{"i":%d}`, i)))...)
	}
	rc.c.Write(burst)
	// The first MaxInFlight publishes time out and are answered as failed.
	for i := 1; i <= inflight; i++ {
		typ, body := rc.read()
		if typ != 0x40 || len(body) < 3 || int(body[1]) != i || body[2] < 0x80 {
			t.Fatalf("want failed PUBACK %d, got 0x%x %v", i, typ, body)
		}
	}
	// Several timeouts later nothing more was taken from the client: its
	// slots are still held by records the log has not answered.
	time.Sleep(2 * time.Second)
	if n := prod.BufferedProduceRecords(); n > inflight {
		t.Fatalf("the producer buffers %d records of one connection with MaxInFlight %d", n, inflight)
	}
	h.release()
	for i := inflight + 1; i <= total; i++ {
		typ, body := rc.read()
		if typ != 0x40 || int(body[1]) != i || (len(body) > 2 && body[2] != 0) {
			t.Fatalf("after the log returned: want PUBACK %d, got 0x%x %v", i, typ, body)
		}
	}
}

// On MQTT 3.1.1 (no negative PUBACK) a publish the log failed ends the
// connection, and no PUBACK of a later publish is written after it,
// even when the later one was logged by the time the writer looked.
func TestNoPubackAfterAFailedOneV311(t *testing.T) {
	// A record larger than the producer's buffer fails at once
	// (kerr.MessageTooLarge); small ones are logged.
	r := newRigProducer(t, Options{}, kgo.MaxBufferedBytes(4096))
	rc := dialRaw(t, r.addr, "v3fail", false)
	rc.c.Write(rc.publish("f/t", 1, []byte(`{"i":1}`)))
	if typ, body := rc.read(); typ != 0x40 || body[1] != 1 {
		t.Fatalf("want PUBACK 1, got 0x%x %v", typ, body)
	}
	cl, ok := r.srv.mqtt.Clients.Get("v3fail")
	if !ok {
		t.Fatal("no client v3fail")
	}
	v, _ := r.srv.conns.Load(cl)
	c := v.(*conn)
	// Hold the writer inside its next write, with PUBACK 2 in hand, until
	// publishes 3 (fails) and 4 (logged) have both been answered by the
	// log.
	cl.Lock()
	rc.c.Write(rc.publish("f/t", 2, []byte(`{"i":2}`)))
	waitFor(t, "publish 2 to reach the writer", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.n == 0 && counterValue(r.srv.metrics.logged) >= 3 // connected, 1, 2
	})
	rc.c.Write(append(rc.publish("f/t", 3, bytes.Repeat([]byte("x"), 8192)), rc.publish("f/t", 4, []byte(`{"i":4}`))...))
	waitFor(t, "the log's answers to publishes 3 and 4", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.n == 2 && c.ring[c.head].state.Load() == failed && c.ring[(c.head+1)%len(c.ring)].state.Load() == logged
	})
	cl.Unlock()
	if typ, body := rc.read(); typ != 0x40 || body[1] != 2 {
		t.Fatalf("want PUBACK 2, got 0x%x %v", typ, body)
	}
	if typ, body := rc.read(); typ != closed {
		t.Fatalf("after the failed publish 3: want the connection closed, got 0x%x %v", typ, body)
	}
}

// ProducerOpts bounds the bytes the producer buffers.
func TestProducerOptsBoundBufferedBytes(t *testing.T) {
	prod, err := kgo.NewClient(ProducerOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	if got := prod.OptValue(kgo.MaxBufferedBytes); got != int64(ProducerMaxBufferedBytes) {
		t.Fatalf("MaxBufferedBytes = %v, want %d", got, ProducerMaxBufferedBytes)
	}
}

// When the producer's buffer is full, publishes wait (back-pressure) and
// nothing is lost: once the log answers again every publish is
// acknowledged and in the log.
func TestFullProducerBufferPushesBack(t *testing.T) {
	h := newHeldLog(t)
	const limit, clients, each, size = 64 << 10, 3, 40, 4096
	srv, prod := h.serve(t, Options{AckTimeout: 5 * time.Minute}, kgo.MaxBufferedBytes(limit))
	var rcs []*rawClient
	for i := 0; i < clients; i++ {
		rcs = append(rcs, dialRaw(t, srv.MQTTAddr().String(), fmt.Sprintf("full-%d", i), false))
	}
	waitFor(t, "the connected events in the log", func() bool { return counterValue(srv.metrics.logged) >= clients })
	h.hold()
	for _, rc := range rcs {
		var burst []byte
		for i := 1; i <= each; i++ {
			burst = append(burst, rc.publish("full/t", uint16(i), bytes.Repeat([]byte("x"), size))...)
		}
		go rc.c.Write(burst)
	}
	waitFor(t, "the producer's buffer to fill", func() bool { return prod.BufferedProduceBytes() >= limit-2*size })
	time.Sleep(time.Second)
	// Buffered plus blocked: at most one blocked record per connection.
	if n := prod.BufferedProduceBytes(); n > limit+clients*(size+512) {
		t.Fatalf("producer holds %d bytes with MaxBufferedBytes %d", n, limit)
	}
	h.release()
	for _, rc := range rcs {
		for i := 1; i <= each; i++ {
			if typ, body := rc.read(); typ != 0x40 || int(body[1]) != i {
				t.Fatalf("%s: want PUBACK %d, got 0x%x %v", rc, i, typ, body)
			}
		}
	}
	waitFor(t, "every publish in the log", func() bool {
		return counterValue(srv.metrics.logged) >= clients*(each+1)
	})
}
