package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/iotpipe/iotpipe/sinks/clickhouse/embedded"
)

// clickhouseInstance starts `iotpipe run` with its embedded ClickHouse on
// free ports.
func clickhouseInstance(t *testing.T) (*instance, []string) {
	in := newInstance(t)
	ch := []string{"--clickhouse-tcp-port", strconv.Itoa(freePort(t)), "--clickhouse-http-port", strconv.Itoa(freePort(t))}
	return in, ch
}

// sql runs `iotpipe sql` against the instance's embedded server, which
// it finds (with its credentials) from the data directory.
func (in *instance) sql(t *testing.T, chArgs []string, query string) string {
	t.Helper()
	var out, errb bytes.Buffer
	code := dispatch(t.Context(), []string{"sql", "--data-dir", in.dataDir, "--format", "csv", query}, &out, &errb)
	if code != 0 {
		return "error: " + errb.String()
	}
	// CSV output: a header line, then the rows.
	_, rows, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
	return rows
}

func (in *instance) waitSQL(t *testing.T, chArgs []string, query, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		if got = in.sql(t, chArgs, query); got == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: got %q, want %q", query, got, want)
}

// make run, publish with mosquitto_pub, then `iotpipe sql "SELECT count()
// FROM telemetry"` shows the rows, and so does the HTTP interface; a
// payload that is not JSON is stored with an empty metrics map.
func TestClickHouseTelemetryFromMQTT(t *testing.T) {
	in, ch := clickhouseInstance(t)
	in.start(ch...)
	mosquittoPub(t, in, "fridge-1", "dt/fridge-1/telemetry", `{"temp":4.5,"door":{"open":1}}`)
	mosquittoPub(t, in, "fridge-1", "dt/fridge-1/telemetry", `{"temp":5.5}`)
	mosquittoPub(t, in, "fridge-2", "dt/fridge-2/raw", "not json \x01")
	in.waitSQL(t, ch, "SELECT count() FROM telemetry", "3")
	in.waitSQL(t, ch, "SELECT avg(metrics['temp']), max(metrics['door.open']) FROM telemetry WHERE thing = 'fridge-1'", "5,1")
	in.waitSQL(t, ch, "SELECT length(metrics), payload = 'not json \\x01' FROM telemetry WHERE thing = 'fridge-2'", "0,1")
	// The HTTP interface answers the credentials iotpipe generated, and
	// refuses a query without them.
	creds, err := embedded.ReadCredentials(filepath.Join(in.dataDir, "clickhouse"))
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range []*url.Userinfo{url.UserPassword(creds.User, creds.Password), nil} {
		u := url.URL{Scheme: "http", User: user, Host: "127.0.0.1:" + ch[3], RawQuery: "query=" + url.QueryEscape("SELECT count() FROM telemetry")}
		resp, err := http.Get(u.String())
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if ok := resp.StatusCode == 200 && strings.TrimSpace(string(b)) == "3"; ok != (user != nil) {
			t.Fatalf("HTTP interface, user %v: %s %s", user, resp.Status, b)
		}
	}
	// POST /api/sql as the README shows it (curl -d sends a form content
	// type), and what its restricted user may not do.
	apiSQL := []struct {
		body   string
		status int
		answer string
	}{
		{`{"query":"SELECT count() FROM telemetry"}`, 200, `"rows":[[3]]`},
		{`{"query":"DROP TABLE telemetry"}`, 400, "DROP TABLE"},
		{`SELECT file('/proc/self/environ')`, 400, "file() reads the server's files"},
		{`SELECT * FROM file('/proc/self/environ', 'RawBLOB', 'x String')`, 400, "READ ON FILE"},
	}
	for _, q := range apiSQL {
		resp, err := http.Post(in.url("/api/sql"), "application/x-www-form-urlencoded", strings.NewReader(q.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != q.status || !strings.Contains(string(b), q.answer) {
			t.Errorf("/api/sql %s: %s %s; want %d with %q", q.body, resp.Status, b, q.status, q.answer)
		}
	}
	in.waitSQL(t, ch, "SELECT count() FROM presence WHERE event = 'connected'", "3")
}

// kill -9 of `iotpipe run` under load, restart: count() equals
// uniqExact(partition, offset) equals the number of publishes in the log.
func TestClickHouseExactlyOnceAcrossKill(t *testing.T) {
	in, ch := clickhouseInstance(t)
	in.start(ch...)
	acked, stop := in.qos1Load(t, 20, "ch", false)
	for acked.Load() < 20000 {
		time.Sleep(10 * time.Millisecond)
	}
	in.kill()
	stop()
	in.start(ch...)
	publishes := 0
	for _, r := range in.readEvents() {
		if env, err := schemas.DecodeEnvelope(r.Headers); err == nil && env.Type == schemas.EventPublish {
			publishes++
		}
	}
	want := fmt.Sprintf("%d,%d", publishes, publishes)
	in.waitSQL(t, ch, "SELECT count(), uniqExact(partition, offset) FROM telemetry", want)
	t.Logf("%d publishes acknowledged before kill -9; telemetry holds %d rows, each (partition, offset) once", acked.Load(), publishes)
}

// The ClickHouse child killed (kill -9) again and again for a while under
// load, then left alone: every row present, none twice; the ingest rate
// during the outage is measured against the rate before it. The outage
// lasts 8 s here and 60 s under `make reliability`.
func TestClickHouseOutageUnderLoad(t *testing.T) {
	outage := 8 * time.Second
	if os.Getenv("IOTPIPE_RELIABILITY") == "long" {
		outage = 60 * time.Second
	}
	in, ch := clickhouseInstance(t)
	in.start(ch...)
	chPath := "--path=" + filepath.Join(in.dataDir, "clickhouse")
	acked, stop := in.qos1Load(t, 10, "out", true)
	rate := func(d time.Duration) float64 {
		before := acked.Load()
		time.Sleep(d)
		return float64(acked.Load()-before) / d.Seconds()
	}
	baseline := rate(4 * time.Second)
	kills := 0
	killDone := make(chan struct{})
	go func() { // kill -9 the chDB child whenever it is back
		defer close(killDone)
		for end := time.Now().Add(outage); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
			out, _ := exec.Command("pgrep", "-f", "--", chPath).Output()
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil && syscall.Kill(pid, syscall.SIGKILL) == nil {
					kills++
				}
			}
		}
	}()
	during := rate(outage)
	<-killDone
	stop()
	if kills == 0 {
		t.Fatal("never found the ClickHouse child to kill")
	}
	publishes := 0
	for _, r := range in.readEvents() {
		if env, err := schemas.DecodeEnvelope(r.Headers); err == nil && env.Type == schemas.EventPublish {
			publishes++
		}
	}
	in.waitSQL(t, ch, "SELECT count(), uniqExact(partition, offset) FROM telemetry", fmt.Sprintf("%d,%d", publishes, publishes))
	t.Logf("ClickHouse child killed %d times over %s: ingest %.0f acked/s before, %.0f during (ratio %.2f); all %d rows present once",
		kills, outage, baseline, during, during/baseline, publishes)
}

// qos1Load connects clients paho devices ("<prefix>-NN") that publish QoS 1
// to "<prefix>/<id>" one message at a time until stop is called; acked
// counts the acknowledged publishes. A device whose publish is not
// acknowledged stops; with mustAck that also fails the test (for loads
// that must ride out an outage elsewhere), without it that is expected
// (the instance was killed).
func (in *instance) qos1Load(t *testing.T, clients int, prefix string, mustAck bool) (acked *atomic.Int64, stop func()) {
	t.Helper()
	acked = new(atomic.Int64)
	var wg sync.WaitGroup
	done := make(chan struct{})
	for c := 0; c < clients; c++ {
		id := fmt.Sprintf("%s-%02d", prefix, c)
		cl := paho.NewClient(paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", in.mqtt)).SetClientID(id).SetAutoReconnect(false))
		if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cl.Disconnect(100)
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				tok := cl.Publish(prefix+"/"+id, 1, false, fmt.Sprintf(`{"i":%d,"v":%d.5}`, i, i%100))
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					if mustAck {
						t.Errorf("%s: publish %d not acknowledged: %v", id, i, tok.Error())
					}
					return
				}
				acked.Add(1)
			}
		}()
	}
	return acked, func() { close(done); wg.Wait() }
}

// Without --clickhouse, `iotpipe sql` needs the embedded server's
// credentials in the data directory: it says so rather than trying the
// server without them.
func TestSQLWithoutCredentials(t *testing.T) {
	t.Setenv("IOTPIPE_CLICKHOUSE", "")
	var out, errb bytes.Buffer
	code := dispatch(t.Context(), []string{"sql", "--data-dir", t.TempDir(), "SELECT 1"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "credentials are not readable") || !strings.Contains(errb.String(), "--data-dir") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}
