package ingest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// rig is a real embedded log plus an ingest server on free ports.
type rig struct {
	log  *eventlog.Log
	prod *kgo.Client
	srv  *Server
	addr string
}

func newRig(t testing.TB, opts Options) *rig {
	t.Helper()
	return newRigProducer(t, opts)
}

// newRigProducer is newRig with a producer of ProducerOpts plus extra.
func newRigProducer(t testing.TB, opts Options, extra ...kgo.Opt) *rig {
	t.Helper()
	return newRigAt(t, t.TempDir(), opts, extra...)
}

// newRigAt is newRig with the log's data in dataDir; the server learns
// from the log why it refuses writes (Options.LogWriteError).
func newRigAt(t testing.TB, dataDir string, opts Options, extra ...kgo.Opt) *rig {
	t.Helper()
	l, err := eventlog.Open(context.Background(), eventlog.Options{DataDir: dataDir, Port: -1, Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	if opts.LogWriteError == nil {
		opts.LogWriteError = l.WriteError
	}
	prod, err := l.Client(append(ProducerOpts(), extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	srv := startServer(t, prod, opts)
	return &rig{log: l, prod: prod, srv: srv, addr: srv.MQTTAddr().String()}
}

// startServer starts an ingest server in --dev mode on a free port
// (unless opts names one), closed when the test ends.
func startServer(t testing.TB, prod Producer, opts Options) *Server {
	t.Helper()
	if opts.MQTTAddr == "" {
		opts.MQTTAddr = "127.0.0.1:0"
	}
	opts.Dev = true
	return serve(t, prod, opts)
}

// serve starts a server with opts, closed when the test ends.
func serve(t testing.TB, prod Producer, opts Options) *Server {
	t.Helper()
	srv, err := New(prod, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// readAll reads every record of topic up to its end offsets, waiting up
// to 20s for there to be at least n records first.
func (r *rig) readAll(t *testing.T, topic string, n int) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var out []*kgo.Record
	for {
		out = out[:0]
		err := eventlog.ReadToEnd(ctx, r.log.Client, topic, func(rec *kgo.Record) error {
			out = append(out, rec)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(out) >= n || ctx.Err() != nil {
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func client(t *testing.T, addr, id string, v5 bool) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetAutoReconnect(false).SetCleanSession(true)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	return c
}

func TestPublishIsLoggedWithEnvelopeAndRouted(t *testing.T) {
	r := newRig(t, Options{})
	sub := client(t, r.addr, "watcher", false)
	var mu sync.Mutex
	var got []string
	if tok := sub.Subscribe("farm/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		got = append(got, string(m.Payload()))
		mu.Unlock()
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	pub := client(t, r.addr, "sensor-123", false)
	const n = 100
	for i := 0; i < n; i++ {
		tok := pub.Publish("farm/sensors/123", 1, false, fmt.Sprintf(`{"temperature":%d}`, i))
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	recs := r.readAll(t, r.log.Topics().Events, n+2) // + connected events of both clients
	var pubs []*kgo.Record
	for _, rec := range recs {
		env, err := schemas.DecodeEnvelope(rec.Headers)
		if err != nil {
			t.Fatalf("record %d: %v", rec.Offset, err)
		}
		if env.Type == schemas.EventPublish {
			if string(rec.Key) != "sensor-123" || env.ClientID != "sensor-123" || env.Topic != "farm/sensors/123" || env.QoS != 1 || env.ReceivedAt == 0 {
				t.Fatalf("bad envelope %+v key %s", env, rec.Key)
			}
			pubs = append(pubs, rec)
		}
	}
	if len(pubs) != n {
		t.Fatalf("logged %d publishes, want %d", len(pubs), n)
	}
	for i, rec := range pubs { // one key, one partition: arrival order
		if want := fmt.Sprintf(`{"temperature":%d}`, i); string(rec.Value) != want {
			t.Fatalf("record %d = %s, want %s", i, rec.Value, want)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscriber got %d of %d routed messages", k, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLifecycleEvents(t *testing.T) {
	r := newRig(t, Options{})
	sub := client(t, r.addr, "monitor", false)
	presence := make(chan string, 10)
	if tok := sub.Subscribe("$aws/events/presence/+/dev-1", 1, func(_ paho.Client, m paho.Message) {
		presence <- m.Topic() + " " + string(m.Payload())
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	dev := client(t, r.addr, "dev-1", false)
	dev.Disconnect(10)
	for _, want := range []string{"connected", "disconnected"} {
		select {
		case m := <-presence:
			if !strings.HasPrefix(m, "$aws/events/presence/"+want+"/dev-1 ") ||
				!strings.Contains(m, `"eventType":"`+want+`"`) || !strings.Contains(m, `"clientId":"dev-1"`) ||
				!strings.Contains(m, `"sessionIdentifier":"`) || !strings.Contains(m, `"ipAddress":"127.0.0.1"`) {
				t.Fatalf("presence message %q", m)
			}
			if want == "disconnected" && !strings.Contains(m, `"disconnectReason":"CLIENT_INITIATED_DISCONNECT"`) {
				t.Fatalf("disconnect reason missing: %q", m)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s presence message", want)
		}
	}
	var types []schemas.EventType
	for _, rec := range r.readAll(t, r.log.Topics().Events, 3) {
		env, _ := schemas.DecodeEnvelope(rec.Headers)
		if string(rec.Key) == "dev-1" {
			types = append(types, env.Type)
		}
	}
	if len(types) != 2 || types[0] != schemas.EventConnected || types[1] != schemas.EventDisconnected {
		t.Fatalf("lifecycle records of dev-1: %v", types)
	}
}

// QoS 0 publishes reach the log whether or not anyone subscribes (the
// unrouted fast path), and are routed once someone does.
func TestQoS0LoggedAndRoutedOnceSubscribed(t *testing.T) {
	r := newRig(t, Options{})
	pub := client(t, r.addr, "q0", false)
	for i := 0; i < 50; i++ {
		pub.Publish("q0/data", 0, false, fmt.Sprintf(`{"i":%d}`, i)).Wait()
	}
	count := func() int {
		n := 0
		for _, rec := range r.readAll(t, r.log.Topics().Events, 51) {
			if env, _ := schemas.DecodeEnvelope(rec.Headers); env.Type == schemas.EventPublish && env.ClientID == "q0" {
				n++
			}
		}
		return n
	}
	// QoS 0 has no acknowledgement: wait for the log to hold all 50
	// before subscribing, so none of them is routed.
	for deadline := time.Now().Add(10 * time.Second); count() < 50; {
		if time.Now().After(deadline) {
			t.Fatalf("QoS 0 publishes without subscribers: %d of 50 logged", count())
		}
	}
	sub := client(t, r.addr, "q0-watch", false)
	got := make(chan string, 100)
	if tok := sub.Subscribe("q0/#", 0, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	pub.Publish("q0/data", 0, false, `{"i":"routed"}`).Wait()
	select {
	case m := <-got:
		if m != `{"i":"routed"}` {
			t.Fatalf("routed %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("QoS 0 publish not routed after the subscription")
	}
	if n := count(); n != 51 {
		t.Fatalf("logged %d QoS 0 publishes, want 51", n)
	}
}
