package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotpipe/iotpipe/schemas"
)

// Ingest and processors run as separate processes sharing the log: the
// `ingest` role hosts the embedded log, `process --kafka` consumes it.
// HTTP publishes and MQTT publishes both reach the last-seen view.
func TestSeparateRolesShareTheLog(t *testing.T) {
	in := newInstance(t)
	in.startIngest()
	procHTTP := in.startProcess("proc").http
	procURL := func(p string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", procHTTP, p) }

	// HTTP publish (Sigfox-style callback), answered once logged.
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("POST", in.url("/topics/sigfox?qos=1"), bytes.NewBufferString(`{"device":"1A2B","data":"0f"}`))
		req.Header.Set("X-Client-Id", "sigfox-1A2B")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !bytes.Contains(b, []byte(`"message":"OK"`)) {
			t.Fatalf("HTTP publish: %d %s", resp.StatusCode, b)
		}
	}
	// Bad HTTP publishes are refused with a clear status.
	for _, c := range []struct {
		path string
		body string
		code int
	}{
		{"/topics/a/%2B/b", "{}", 400},
		{"/topics/a?qos=2", "{}", 400},
		{"/topics/big", string(make([]byte, 200<<10)), 413},
	} {
		resp, err := http.Post(in.url(c.path), "application/json", bytes.NewBufferString(c.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.code {
			t.Errorf("POST %s: %d, want %d", c.path, resp.StatusCode, c.code)
		}
	}
	mosquittoPub(t, in, "sensor-9", "farm/sensors/9", `{"temperature":21}`)

	for thing, want := range map[string]float64{"sigfox-1A2B": 3, "sensor-9": 1} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get(procURL("/api/things/" + thing))
			var m map[string]any
			if err == nil {
				json.NewDecoder(resp.Body).Decode(&m)
				resp.Body.Close()
			}
			if m["messages"] == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("process role: thing %s = %v, want %v messages", thing, m, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// startIngest starts `iotpipe ingest --dev` of in (the MQTT front, the
// HTTP API and the embedded log with 4 partitions, on in's ports), stops
// it when the test ends and waits until it is ready.
func (in *instance) startIngest() *exec.Cmd {
	in.t.Helper()
	return in.startChild(in.http, "ingest", "--dev", "--data-dir", in.dataDir,
		"--mqtt-addr", fmt.Sprintf("127.0.0.1:%d", in.mqtt), "--http-addr", fmt.Sprintf("127.0.0.1:%d", in.http),
		"--kafka-port", strconv.Itoa(in.kafka), "--partitions", "4")
}

// startSinkNode starts `iotpipe sink` against in's log (without
// ClickHouse: the action executors), stopped when the test ends.
func (in *instance) startSinkNode() *exec.Cmd {
	in.t.Helper()
	port := freePort(in.t)
	return in.startChild(port, "sink", "--data-dir", filepath.Join(in.dataDir, "sink"), "--clickhouse", "off",
		"--kafka", fmt.Sprintf("127.0.0.1:%d", in.kafka), "--kafka-credentials", in.kafkaCredentials(),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", port))
}

// processNode is an `iotpipe process` child.
type processNode struct {
	cmd  *exec.Cmd
	http int
}

// startProcess starts an `iotpipe process` node against in's log, its
// data under in's data dir in name, stops it when the test ends and
// waits until it is ready.
func (in *instance) startProcess(name string) processNode {
	in.t.Helper()
	port := freePort(in.t)
	cmd := in.startChild(port, "process", "--data-dir", filepath.Join(in.dataDir, name),
		"--kafka", fmt.Sprintf("127.0.0.1:%d", in.kafka), "--kafka-credentials", in.kafkaCredentials(),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", port), "--rules", filepath.Join(in.dataDir, "rules"))
	return processNode{cmd: cmd, http: port}
}

// startChild runs the binary with args, killed when the test ends, and
// waits until its HTTP port answers /readyz.
func (in *instance) startChild(httpPort int, args ...string) *exec.Cmd {
	in.t.Helper()
	c := exec.Command(iotpipeBin, args...)
	c.Stdout, c.Stderr = os.Stderr, os.Stderr
	if err := c.Start(); err != nil {
		in.t.Fatal(err)
	}
	in.t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	waitReady(in.t, fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort))
	return c
}

func waitReady(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A client that goes away without DISCONNECT has its Last Will delivered
// to subscribers and written to the log.
func TestLastWillDeliveredAndLogged(t *testing.T) {
	in := newInstance(t)
	in.start()
	wills := make(chan string, 2)
	watcher := paho.NewClient(paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", in.mqtt)).SetClientID("watcher"))
	if tok := watcher.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := watcher.Subscribe("status/+", 1, func(_ paho.Client, m paho.Message) { wills <- m.Topic() + " " + string(m.Payload()) }); !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("subscribe")
	}
	// A raw connection with a will, closed without DISCONNECT.
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", in.mqtt))
	if err != nil {
		t.Fatal(err)
	}
	var body []byte
	str := func(s string) { body = append(body, byte(len(s)>>8), byte(len(s))); body = append(body, s...) }
	str("MQTT")
	body = append(body, 4, 0x02|0x04|0x08, 0, 60) // clean, will flag, will QoS 1
	str("dying-1")
	str("status/dying-1")
	str(`{"online":false}`)
	c.Write(append([]byte{0x10, byte(len(body))}, body...))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 {
		t.Fatalf("connack %v %v", ack, err)
	}
	c.Close()
	select {
	case w := <-wills:
		if w != `status/dying-1 {"online":false}` {
			t.Fatalf("will %q", w)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no last will delivered")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		found := false
		for _, r := range in.readEvents() {
			env, _ := schemas.DecodeEnvelope(r.Headers)
			if env.Topic == "status/dying-1" && env.ClientID == "dying-1" && string(r.Value) == `{"online":false}` {
				found = true
			}
		}
		if found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("last will not in the log")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
