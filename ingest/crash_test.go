package ingest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// nodeEnv, when set, makes the test binary an ingest node (for the crash
// test to kill -9): "<data dir>,<kafka port>,<mqtt port>".
const nodeEnv = "IOTPIPE_INGEST_TEST_NODE"

func TestMain(m *testing.M) {
	if spec := os.Getenv(nodeEnv); spec != "" {
		runTestNode(spec)
		return
	}
	os.Exit(m.Run())
}

// runTestNode runs an embedded log and an ingest server with their data
// under a dir, prints READY and serves until killed.
func runTestNode(spec string) {
	parts := strings.Split(spec, ",")
	dir := parts[0]
	kport, _ := strconv.Atoi(parts[1])
	mport, _ := strconv.Atoi(parts[2])
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, err := eventlog.Open(context.Background(), eventlog.Options{DataDir: filepath.Join(dir, "kafka"), Port: kport, Partitions: 2, Logger: log})
	if err != nil {
		panic(err)
	}
	prod, err := l.Client(ProducerOpts()...)
	if err != nil {
		panic(err)
	}
	srv, err := New(prod, Options{MQTTAddr: fmt.Sprintf("127.0.0.1:%d", mport), Dev: true, SessionDir: filepath.Join(dir, "mqtt"), Logger: log})
	if err != nil {
		panic(err)
	}
	if err := srv.Start(); err != nil {
		panic(err)
	}
	fmt.Println("READY")
	select {}
}

// testNode is a child process running runTestNode.
type testNode struct {
	t            *testing.T
	dir          string
	kport, mport int
	cmd          *exec.Cmd
}

func freeTCPPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (n *testNode) start() {
	n.t.Helper()
	n.cmd = exec.Command(os.Args[0], "-test.run=^$")
	n.cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,%d", nodeEnv, n.dir, n.kport, n.mport))
	n.cmd.Stderr = os.Stderr
	out, err := n.cmd.StdoutPipe()
	if err != nil {
		n.t.Fatal(err)
	}
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line == "READY\n"
	}()
	select {
	case ok := <-ready:
		if !ok {
			n.t.Fatal("test node did not start")
		}
	case <-time.After(60 * time.Second):
		n.t.Fatal("test node not ready after 60s")
	}
}

func (n *testNode) kill() {
	_ = n.cmd.Process.Kill()
	_ = n.cmd.Wait()
}

func (n *testNode) mqtt() string { return fmt.Sprintf("127.0.0.1:%d", n.mport) }

// events reads the node's events topic, waiting until want(records) holds
// (up to 30s).
func (n *testNode) events(want func([]*kgo.Record) bool) []*kgo.Record {
	n.t.Helper()
	creds, err := eventlog.ReadCredentials(filepath.Join(n.dir, "kafka"))
	if err != nil {
		n.t.Fatal(err)
	}
	auth, err := creds.Opt()
	if err != nil {
		n.t.Fatal(err)
	}
	newClient := func(opts ...kgo.Opt) (*kgo.Client, error) {
		return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(fmt.Sprintf("127.0.0.1:%d", n.kport)), auth}, opts...)...)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var recs []*kgo.Record
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := eventlog.ReadToEnd(ctx, newClient, schemas.DefaultTopics().Events, func(r *kgo.Record) error {
			recs = append(recs, r)
			return nil
		})
		cancel()
		if err == nil && want(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			for _, l := range lifecycles(recs) {
				n.t.Logf("%s %s %s", l.typ, l.client, l.ev.DisconnectReason)
			}
			n.t.Fatalf("events topic: %d records, condition not met (err %v)", len(recs), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lifecycle is a connected or disconnected record of the log.
type lifecycle struct {
	typ    schemas.EventType
	client string
	ev     presenceEvent
}

func lifecycles(recs []*kgo.Record) []lifecycle {
	var out []lifecycle
	for _, r := range recs {
		env, err := schemas.DecodeEnvelope(r.Headers)
		if err != nil || (env.Type != schemas.EventConnected && env.Type != schemas.EventDisconnected) {
			continue
		}
		l := lifecycle{typ: env.Type, client: env.ClientID}
		_ = json.Unmarshal(r.Value, &l.ev)
		out = append(out, l)
	}
	return out
}

// After a kill -9, the next start writes a disconnected event (and its
// presence message) for every session the dead node held connected, with
// the session identifier of its connected event; a further restart writes
// none again.
func TestCrashLeftSessionsDisconnectedAtStart(t *testing.T) {
	n := &testNode{t: t, dir: t.TempDir(), kport: freeTCPPort(t), mport: freeTCPPort(t)}
	n.start()
	defer func() { n.kill() }()
	mon, _, err := connectRaw(t, n.mqtt(), "monitor", connectOpts{})
	if err != nil {
		t.Fatal(err)
	}
	mon.subscribe("$aws/events/presence/disconnected/#", 1)
	devices := map[string]connectOpts{
		"dev-clean":   {clean: true},
		"dev-persist": {},
		"dev-v5":      {v5: true, expiry: 600},
	}
	for id, o := range devices {
		if _, _, err := connectRaw(t, n.mqtt(), id, o); err != nil {
			t.Fatal(err)
		}
	}
	count := func(recs []*kgo.Record, typ schemas.EventType, reason string) map[string]int {
		m := map[string]int{}
		for _, l := range lifecycles(recs) {
			if l.typ == typ && (reason == "" || l.ev.DisconnectReason == reason) {
				m[l.client]++
			}
		}
		return m
	}
	before := n.events(func(recs []*kgo.Record) bool { return len(count(recs, schemas.EventConnected, "")) == 4 })
	sessions := map[string]string{}
	for _, l := range lifecycles(before) {
		sessions[l.client] = l.ev.SessionIdentifier
	}
	n.kill()

	n.start()
	const reason = "SERVER_INITIATED_DISCONNECT"
	after := n.events(func(recs []*kgo.Record) bool { return len(count(recs, schemas.EventDisconnected, reason)) == 4 })
	for _, l := range lifecycles(after) {
		if l.typ != schemas.EventDisconnected {
			continue
		}
		if l.ev.SessionIdentifier != sessions[l.client] || l.ev.ClientInitiatedDisconnect == nil || *l.ev.ClientInitiatedDisconnect {
			t.Errorf("disconnected event of %s: %+v, want session %s, not client initiated", l.client, l.ev, sessions[l.client])
		}
	}
	// The monitor's persistent session was loaded with its subscription:
	// the presence messages wait for it.
	mon, connack, err := connectRaw(t, n.mqtt(), "monitor", connectOpts{})
	if err != nil || connack[0] != 1 {
		t.Fatalf("monitor reconnect: session present %v, %v", connack, err)
	}
	got := map[string]bool{}
	mon.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for len(got) < 3 {
		topic, payload := mon.nextPublish()
		var ev presenceEvent
		if err := json.Unmarshal([]byte(payload), &ev); err != nil || ev.DisconnectReason != reason {
			t.Fatalf("presence message %s %s", topic, payload)
		}
		if _, ok := devices[ev.ClientID]; ok {
			got[ev.ClientID] = true
		}
	}

	// A PUBACK means the monitor's session was established (its read loop
	// starts after the session hooks ran): it is recorded live.
	mon.c.Write(mon.publish("monitor/ping", 9, []byte("{}")))
	for {
		typ, body := mon.read()
		if typ == 0x40 && body[1] == 9 {
			break
		}
		if typ == 0 {
			t.Fatal("monitor connection closed")
		}
	}

	// Once written, they are not written again.
	n.kill()
	n.start()
	final := n.events(func(recs []*kgo.Record) bool { return count(recs, schemas.EventDisconnected, reason)["monitor"] == 2 })
	for id := range devices {
		if c := count(final, schemas.EventDisconnected, reason)[id]; c != 1 {
			t.Errorf("%s has %d disconnected events after two restarts, want 1", id, c)
		}
	}
}
