package reliability

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// broker is a mochi-mqtt broker that remembers the payload of every
// publish it accepted and refuses publishes with 0x97 while refusing is
// set; it can be stopped and started again on the same address.
type broker struct {
	mqtt.HookBase
	t        *testing.T
	addr     string
	srv      *mqtt.Server
	refusing atomic.Bool
	mu       sync.Mutex
	accepted [][]byte
}

func newBroker(t *testing.T) *broker {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &broker{t: t, addr: ln.Addr().String()}
	ln.Close()
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *broker) ID() string { return "test-broker" }

func (b *broker) Provides(x byte) bool {
	return bytes.Contains([]byte{mqtt.OnPublish, mqtt.OnPublished}, []byte{x})
}

func (b *broker) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if b.refusing.Load() && !bytes.HasPrefix([]byte(pk.TopicName), []byte("cmd/")) {
		return pk, packets.ErrQuotaExceeded
	}
	return pk, nil
}

func (b *broker) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	b.mu.Lock()
	b.accepted = append(b.accepted, bytes.Clone(pk.Payload))
	b.mu.Unlock()
}

func (b *broker) start() {
	b.t.Helper()
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for _, h := range []mqtt.Hook{new(auth.AllowHook), b} {
		if err := srv.AddHook(h, nil); err != nil {
			b.t.Fatal(err)
		}
	}
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err = srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: b.addr})); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("listen on %s: %v", b.addr, err)
		}
	}
	if err := srv.Serve(); err != nil {
		b.t.Fatal(err)
	}
	b.srv = srv
}

func (b *broker) stop() {
	if b.srv != nil {
		b.srv.Close()
		b.srv = nil
	}
}

// ids are the ids of the publishes the broker accepted.
func (b *broker) ids() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, p := range b.accepted {
		if id, ok := PublishID(p); ok {
			out = append(out, id)
		}
	}
	return out
}

// waitAcked waits until the ledger has at least n acknowledgements.
func waitAcked(t *testing.T, l *Ledger, n int) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); l.Stats().Acked < n; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d publishes acknowledged, want %d", l.Stats().Acked, n)
		}
	}
}

// The load publishes telemetry and shadow updates with their ids,
// reconnects after the broker went away and came back, counts refusals
// by reason code and commands by command_id; every acknowledged publish
// is among those the broker accepted, once.
func TestLoadAgainstMochi(t *testing.T) {
	b := newBroker(t)
	ledger := NewLedger()
	l := StartLoad(LoadOptions{Addr: b.addr, Devices: 3, Rate: 200, ShadowEvery: 4, Commands: "cmd/{id}", Prefix: "lt"}, ledger)
	defer l.Stop()
	waitAcked(t, ledger, 100)

	b.stop() // the broker goes away: the devices reconnect
	before := ledger.Stats().Acked
	b.start()
	waitAcked(t, ledger, before+100)
	for deadline := time.Now().Add(30 * time.Second); l.Connects() < 6; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections, want 6 (3 devices, each reconnected)", l.Connects())
		}
	}

	b.refusing.Store(true)
	for deadline := time.Now().Add(30 * time.Second); ledger.Stats().Refused[0x97] < 20; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("refusals %v, want 20 with 0x97", ledger.Stats().Refused)
		}
	}
	b.refusing.Store(false)
	refusedAt := time.Now()
	if _, ok := ledger.AwaitAckAfter(refusedAt, 10*time.Second); !ok {
		t.Fatal("no publish acknowledged after the refusals stopped")
	}

	// Commands to a device (sent until one arrives: it may still be
	// subscribing) are counted by their command_id, each once.
	for i := 0; len(l.Commands()) == 0; i++ {
		if i == 100 {
			t.Fatal("no command reached the device")
		}
		if err := b.srv.Publish("cmd/lt-01", fmt.Appendf(nil, `{"command_id":"c-%d","go":true}`, i), false, 1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	l.Stop()
	for id, got := range l.Commands() {
		if got.Times != 1 || got.First.IsZero() {
			t.Errorf("command %s received %+v, want once", id, got)
		}
	}

	c := ledger.Check(b.ids())
	if p := c.Problems(5); len(p) > 0 {
		t.Fatal(p)
	}
	b.mu.Lock()
	shadows, all := 0, len(b.accepted)
	for _, p := range b.accepted {
		if bytes.Contains(p, []byte(`"clientToken"`)) {
			shadows++
		}
	}
	b.mu.Unlock()
	if shadows == 0 || shadows == all {
		t.Errorf("%d shadow updates among %d publishes, want about a quarter", shadows, all)
	}
	st := ledger.Stats()
	if st.Acked != c.Acked || st.Sent < st.Acked+st.Refused[0x97] {
		t.Errorf("stats %+v do not add up (check %+v)", st, c)
	}
	t.Logf("%d sent, %d acknowledged, refused %v, %d connections, %d logged but unacknowledged", st.Sent, st.Acked, st.Refused, l.Connects(), c.Unacked)
}

// Dial reports a refused CONNECT with its reason code, and Await an
// answer or a closed connection.
func TestDialAndAwait(t *testing.T) {
	b := newBroker(t)
	c, code, err := Dial(b.addr, ConnectOptions{ClientID: "ok"})
	if err != nil || code != 0 {
		t.Fatalf("dial: code 0x%02x, %v", code, err)
	}
	defer c.Close()
	if err := c.Publish("a/b", 1, 7, []byte("x")); err != nil {
		t.Fatal(err)
	}
	a, err := c.Await(5*time.Second, packets.Puback)
	if err != nil || a.String() != "PUBACK 0x00" {
		t.Fatalf("await PUBACK: %v %v", a, err)
	}
	// mochi closes a connection on a malformed packet.
	if err := c.WriteRaw([]byte{0x32, 0xff, 0xff, 0xff, 0xff, 0x7f}); err != nil {
		t.Fatal(err)
	}
	if a, err := c.Await(5*time.Second, packets.Puback, packets.Disconnect); err != nil || (a != Closed && a.Type != packets.Disconnect) {
		t.Fatalf("await after a malformed packet: %v %v", a, err)
	}
	if _, _, err := Dial(fmt.Sprintf("127.0.0.1:%d", 1), ConnectOptions{ClientID: "nobody", Timeout: time.Second}); err == nil {
		t.Fatal("dial to a closed port succeeded")
	}
}
