package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

var iotpipeBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "iotpipe-bin")
	if err != nil {
		panic(err)
	}
	iotpipeBin = filepath.Join(dir, "iotpipe")
	// Every iotpipe the tests start makes this its admin API token on
	// its first start, and the tests' HTTP requests carry it unless they
	// set their own Authorization (the API refuses requests without).
	os.Setenv("IOTPIPE_BOOTSTRAP_TOKEN", testAPIToken)
	http.DefaultTransport = tokenTransport{http.DefaultTransport}
	args := []string{"build", "-o", iotpipeBin}
	if os.Getenv("IOTPIPE_RACE") != "" {
		args = append(args, "-race") // the child processes run with the race detector
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build iotpipe: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testAPIToken is the admin API token of the iotpipe processes the tests
// start (--bootstrap-token through the environment).
const testAPIToken = "iotp_" + "dGVzdHMtb2YtaW90cGlwZS1hcGktdG9rZW4tMzJieXQ"

// tokenTransport adds testAPIToken to requests without an Authorization
// header.
type tokenTransport struct{ base http.RoundTripper }

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+testAPIToken)
	}
	return t.base.RoundTrip(r)
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	usedPorts.Lock()
	defer usedPorts.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		// The kernel may hand a just-closed port out again: never give
		// one twice in this test binary (two parts of one instance on the
		// same port fail to start).
		if !usedPorts.m[port] {
			usedPorts.m[port] = true
			return port
		}
	}
}

// usedPorts are the ports freePort has handed out.
var usedPorts = struct {
	sync.Mutex
	m map[int]bool
}{m: map[int]bool{}}

// instance is an `iotpipe run --dev` child process on free ports.
type instance struct {
	t                 *testing.T
	dataDir           string
	mqtt, http, kafka int
	cmd               *exec.Cmd
	logf              *os.File
	dumpOnFailure     bool
	// dir is the child's working directory (default: the test's) and
	// env is added to its environment (a later value of a name wins).
	dir string
	env []string
	// httpsScheme: the API is served over TLS (--http-tls).
	httpsScheme bool
}

// dumpLog prints the end of the child's log when the test failed, so a
// failure says what the process was doing.
func (in *instance) dumpLog() {
	if !in.t.Failed() {
		return
	}
	b, err := os.ReadFile(filepath.Join(in.dataDir, "iotpipe.log"))
	if err != nil {
		return
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) > 150 {
		lines = lines[len(lines)-150:]
	}
	in.t.Logf("last lines of %s:\n%s", filepath.Join(in.dataDir, "iotpipe.log"), strings.Join(lines, "\n"))
}

func newInstance(t *testing.T) *instance {
	return &instance{t: t, dataDir: t.TempDir(), mqtt: freePort(t), http: freePort(t), kafka: freePort(t)}
}

func (in *instance) start(extra ...string) {
	in.t.Helper()
	args := append([]string{"run", "--dev", "--data-dir", in.dataDir,
		"--mqtt-addr", fmt.Sprintf("127.0.0.1:%d", in.mqtt),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", in.http),
		"--kafka-port", strconv.Itoa(in.kafka), "--partitions", "4",
		"--rules", filepath.Join(in.dataDir, "rules")}, extra...)
	if !slices.Contains(extra, "--clickhouse-tcp-port") {
		args = append(args, "--clickhouse", "off") // tests about ClickHouse start it on free ports
	}
	in.cmd = exec.Command(iotpipeBin, args...)
	in.cmd.Dir = in.dir
	if in.env != nil {
		in.cmd.Env = append(os.Environ(), in.env...)
	}
	f, err := os.OpenFile(filepath.Join(in.dataDir, "iotpipe.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		in.t.Fatal(err)
	}
	in.logf = f
	in.cmd.Stdout, in.cmd.Stderr = f, f
	if err := in.cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	in.t.Cleanup(func() { in.kill() })
	if !in.dumpOnFailure {
		in.dumpOnFailure = true
		in.t.Cleanup(in.dumpLog)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := readyClient.Get(in.url("/readyz"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(in.dataDir, "iotpipe.log"))
			in.t.Fatalf("iotpipe not ready: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (in *instance) kill() {
	if in.cmd != nil && in.cmd.Process != nil {
		in.cmd.Process.Signal(syscall.SIGKILL)
		in.cmd.Wait()
		in.cmd = nil
		in.logf.Close()
		in.checkLog()
	}
}

// checkLog fails the test when the child's log reports a data race (with
// IOTPIPE_RACE=1 the child runs under the race detector).
func (in *instance) checkLog() {
	b, _ := os.ReadFile(filepath.Join(in.dataDir, "iotpipe.log"))
	if i := bytes.Index(b, []byte("WARNING: DATA RACE")); i >= 0 {
		end := min(len(b), i+4000)
		in.t.Errorf("the iotpipe child reported a data race:\n%s", b[i:end])
	}
}

func (in *instance) url(path string) string {
	scheme := "http"
	if in.httpsScheme {
		scheme = "https"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d%s", scheme, in.http, path)
}

// readyClient polls /readyz, over TLS without checking the server's
// certificate (the tests that serve TLS check it themselves).
var readyClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// readEvents reads the whole events topic up to its end offsets.
func (in *instance) readEvents() []*kgo.Record {
	in.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []*kgo.Record
	err := eventlog.ReadToEnd(ctx, in.logClients().Client, schemas.DefaultTopics().Events,
		func(r *kgo.Record) error { out = append(out, r); return nil })
	if err != nil {
		in.t.Fatal(err)
	}
	return out
}

func (in *instance) thing(name string) (map[string]any, int) {
	resp, err := http.Get(in.url("/api/things/" + name))
	if err != nil {
		return nil, 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m, resp.StatusCode
}

// TestCrashLosesNoAcknowledgedPublish is the foundation's crash test: QoS 1
// load from 50 clients, kill -9 mid-run, restart; every acknowledged
// publish is in the log exactly once and the last-seen counts equal the
// log.
func TestCrashLosesNoAcknowledgedPublish(t *testing.T) {
	in := newInstance(t)
	in.start()
	load := startAckLoad(t, in, "crash", 50)
	time.Sleep(3 * time.Second)
	in.kill() // kill -9 mid-run
	load.stop()
	total := load.total()
	if total == 0 {
		t.Fatal("nothing was acknowledged before the kill")
	}

	in.start()
	counts := load.checkLogged(t, in.readEvents())
	// The last-seen processor resumes from its state and counts each
	// logged publish once.
	deadline := time.Now().Add(60 * time.Second)
	for id, want := range counts {
		for {
			m, code := in.thing(id)
			if code == 200 && int(m["messages"].(float64)) == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("thing %s: last-seen %v (HTTP %d), log has %d publishes", id, m, code, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	logged := 0
	for _, n := range counts {
		logged += n
	}
	t.Logf("%d publishes acknowledged before kill -9, %d logged; last-seen counts equal the log for %d things", total, logged, len(counts))
}

// ackLoad publishes QoS 1 `{"client":id,"seq":n}` to "<prefix>/<id>" from
// paho clients "<prefix>-NN", up to 32 in flight each, until stopped or
// the connection breaks, and remembers each acknowledged publish and
// when its PUBACK arrived.
type ackLoad struct {
	prefix string
	stopc  chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	acked  map[string]map[int]time.Time // client -> seq -> PUBACK time
}

func startAckLoad(t *testing.T, in *instance, prefix string, clients int) *ackLoad {
	t.Helper()
	l := &ackLoad{prefix: prefix, stopc: make(chan struct{}), acked: map[string]map[int]time.Time{}}
	for c := 0; c < clients; c++ {
		id := fmt.Sprintf("%s-%02d", prefix, c)
		mine := map[int]time.Time{}
		l.acked[id] = mine
		o := paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", in.mqtt)).SetClientID(id).
			SetAutoReconnect(false).SetConnectRetry(false)
		cl := paho.NewClient(o)
		if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", id, tok.Error())
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			defer cl.Disconnect(0)
			var window sync.WaitGroup
			defer window.Wait()
			for seq := 0; ; seq++ {
				select {
				case <-l.stopc:
					return
				default:
				}
				if !cl.IsConnectionOpen() {
					return
				}
				tok := cl.Publish(prefix+"/"+id, 1, false, fmt.Sprintf(`{"client":%q,"seq":%d}`, id, seq))
				window.Add(1)
				go func() { // notes the PUBACK when it arrives
					defer window.Done()
					select {
					case <-tok.Done():
					case <-time.After(10 * time.Second):
						return
					}
					if tok.Error() == nil {
						l.mu.Lock()
						mine[seq] = time.Now()
						l.mu.Unlock()
					}
				}()
				if seq%32 == 31 { // a window of 32 in flight
					window.Wait()
				}
			}
		}()
	}
	return l
}

// stop ends the load and waits for the outstanding acknowledgements.
func (l *ackLoad) stop() {
	close(l.stopc)
	l.wg.Wait()
}

// total is how many publishes were acknowledged.
func (l *ackLoad) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.acked {
		n += len(m)
	}
	return n
}

// lastAck is when the last PUBACK arrived.
func (l *ackLoad) lastAck() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var last time.Time
	for _, m := range l.acked {
		for _, at := range m {
			if at.After(last) {
				last = at
			}
		}
	}
	return last
}

// checkLogged checks that every acknowledged publish of the load is in
// recs (the events topic) exactly once and that no publish is there
// twice; it returns the load's logged publishes per client.
func (l *ackLoad) checkLogged(t *testing.T, recs []*kgo.Record) map[string]int {
	t.Helper()
	counts := map[string]int{}
	seen := map[string]int{}
	for _, r := range recs {
		env, err := schemas.DecodeEnvelope(r.Headers)
		if err != nil {
			t.Fatal(err)
		}
		if env.Type != schemas.EventPublish || !strings.HasPrefix(env.ClientID, l.prefix+"-") {
			continue
		}
		var p struct {
			Client string
			Seq    int
		}
		if err := json.Unmarshal(r.Value, &p); err != nil {
			t.Fatal(err)
		}
		seen[fmt.Sprintf("%s/%d", p.Client, p.Seq)]++
		counts[env.ClientID]++
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, m := range l.acked {
		for seq := range m {
			switch n := seen[fmt.Sprintf("%s/%d", id, seq)]; n {
			case 1:
			case 0:
				t.Errorf("acknowledged %s/%d lost", id, seq)
			default:
				t.Errorf("acknowledged %s/%d in the log %d times", id, seq, n)
			}
		}
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("%s in the log %d times", k, n)
		}
	}
	return counts
}
