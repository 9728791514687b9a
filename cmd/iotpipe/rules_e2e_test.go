package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/iotpipe/iotpipe/sinks/webhook"
)

func writeRule(t *testing.T, in *instance, name, src string) {
	t.Helper()
	dir := filepath.Join(in.dataDir, "rules")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mosquittoPub(t *testing.T, in *instance, id, topic, msg string) {
	t.Helper()
	out, err := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", fmt.Sprint(in.mqtt), "-q", "1", "-i", id, "-t", topic, "-m", msg).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
}

// The greenhouse: a command action to greenhouse/${topic(2)}/shade reaches
// a mosquitto_sub on that topic above the threshold, and nothing is sent
// below it.
func TestGreenhouseCommandReachesSubscriber(t *testing.T) {
	in := newInstance(t)
	writeRule(t, in, "greenhouse.sql", `CREATE RULE greenhouse_shade AS
SELECT * FROM 'greenhouse/+/lux' WHERE lux > 35000
THEN command(thing => '${topic(2)}', topic => 'greenhouse/${topic(2)}/shade', payload => '{"shade": "close", "lux": ${lux}}');`)
	in.start()
	sub := exec.Command("mosquitto_sub", "-h", "127.0.0.1", "-p", fmt.Sprint(in.mqtt), "-q", "1", "-v", "-t", "greenhouse/+/shade")
	stdout, _ := sub.StdoutPipe()
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer sub.Process.Kill()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	time.Sleep(500 * time.Millisecond) // mosquitto_sub subscribed
	mosquittoPub(t, in, "gh-7", "greenhouse/gh-7/lux", `{"lux": 20000}`)
	mosquittoPub(t, in, "gh-7", "greenhouse/gh-7/lux", `{"lux": 40000}`)
	select {
	case l := <-lines:
		if !strings.HasPrefix(l, "greenhouse/gh-7/shade ") || !strings.Contains(l, `"shade":"close"`) && !strings.Contains(l, `"shade": "close"`) || !strings.Contains(l, "40000") {
			t.Fatalf("command %q", l)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no command reached the subscriber")
	}
	select {
	case l := <-lines:
		t.Fatalf("a second command (below the threshold?): %q", l)
	case <-time.After(2 * time.Second):
	}
}

// Lifecycle: an offline presence event fires a webhook carrying the device
// id to a local server, and the signature verifies.
func TestOfflineWebhookSigned(t *testing.T) {
	const secret = "s3cret"
	got := make(chan string, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := webhook.VerifyRequest(r, []byte(secret), time.Now(), time.Minute)
		if err != nil {
			t.Errorf("signature: %v", err)
			w.WriteHeader(401)
			return
		}
		if r.Header.Get("Idempotency-Key") == "" {
			t.Error("no Idempotency-Key")
		}
		got <- string(body)
	}))
	defer srv.Close()
	in := newInstance(t)
	writeRule(t, in, "offline.sql", `CREATE RULE device_offline AS
SELECT clientId AS device, eventType, disconnectReason FROM '$aws/events/presence/disconnected/+'
THEN webhook(url => '`+srv.URL+`/offline?d=${clientId}');`)
	in.start("--webhook-secret", secret)
	mosquittoPub(t, in, "sensor-42", "hello", "1") // connects, publishes, disconnects
	select {
	case body := <-got:
		var m map[string]any
		if err := json.Unmarshal([]byte(body), &m); err != nil || m["device"] != "sensor-42" || m["eventType"] != "disconnected" {
			t.Fatalf("webhook body %s", body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no webhook for the offline device")
	}
	// The rule shows in /api/rules with its counters.
	resp, err := http.Get(in.url("/api/rules"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "device_offline") {
		t.Fatalf("/api/rules: %s", b)
	}
}

// rulesStatus reads GET /api/rules.
func (in *instance) rulesStatus(t *testing.T) (running []string, fileErrs map[string]string) {
	t.Helper()
	resp, err := http.Get(in.url("/api/rules"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Rules []struct{ Name string }
		Files []struct{ Path, Error string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	fileErrs = map[string]string{}
	for _, r := range st.Rules {
		running = append(running, r.Name)
	}
	for _, f := range st.Files {
		if f.Error != "" {
			fileErrs[filepath.Base(f.Path)] = f.Error
		}
	}
	return running, fileErrs
}

// A rule file broken while iotpipe is down keeps running its last good
// version after the restart (kept under the data dir), and /api/rules
// says so. Before, the restarted node ran none of its rules.
func TestBrokenRuleFileRunsLastGoodVersionAfterRestart(t *testing.T) {
	in := newInstance(t)
	writeRule(t, in, "lux.sql", `CREATE RULE lux AS SELECT lux FROM 'g/+/lux' WHERE lux > 100 THEN kafka(topic => 'lux-alerts')`)
	in.start()
	if running, errs := in.rulesStatus(t); strings.Join(running, ",") != "lux" || len(errs) != 0 {
		t.Fatalf("before: running %v, errors %v", running, errs)
	}
	in.stop()
	writeRule(t, in, "lux.sql", `CREATE RULE lux AS SELECT lux FROM 'g/+/lux' WHERE lux > THEN kafka(topic => 'lux-alerts')`)
	in.start()
	running, errs := in.rulesStatus(t)
	if strings.Join(running, ",") != "lux" {
		t.Errorf("after the restart running %v, want lux", running)
	}
	if e := errs["lux.sql"]; !strings.Contains(e, "lux.sql:1:") || !strings.Contains(e, "its last good version runs, kept in "+filepath.Join(in.dataDir, "rules-last-good", "lux.sql")) {
		t.Errorf("lux.sql error %q", e)
	}
}

// A kafka action to a topic that does not exist, on the embedded log:
// the topic is created on first use and every firing lands in it, none
// in the DLQ. Before, every firing went to the DLQ
// (UNKNOWN_TOPIC_OR_PARTITION).
func TestKafkaActionCreatesTopicOnEmbeddedLog(t *testing.T) {
	in := newInstance(t)
	writeRule(t, in, "hot.sql", `CREATE RULE hot AS SELECT temp FROM 'dt/+/temp' WHERE temp > 30 THEN kafka(topic => 'alerts')`)
	in.start()
	for i := 0; i < 3; i++ {
		mosquittoPub(t, in, "oven-1", "dt/oven-1/temp", fmt.Sprintf(`{"temp":%d}`, 40+i))
	}
	seeds := []string{fmt.Sprintf("127.0.0.1:%d", in.kafka)}
	deadline := time.Now().Add(60 * time.Second)
	for {
		creds, err := eventlog.ReadCredentials(in.kafkaCredentials())
		if err != nil {
			t.Fatal(err)
		}
		missing, err := eventlog.MissingTopics(t.Context(), seeds, creds, []string{"alerts"})
		if err == nil && len(missing) == 0 && len(in.readTopic("alerts")) == 3 {
			break
		}
		if time.Now().After(deadline) {
			dlq := 0
			for _, r := range in.readTopic(schemas.DefaultTopics().DLQ) {
				if recHeader(r, "dlq.stage") == "kafka" {
					dlq++
				}
			}
			t.Fatalf("alerts: missing %v (%v); %d kafka actions in the DLQ", missing, err, dlq)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, r := range in.readTopic(schemas.DefaultTopics().DLQ) {
		if recHeader(r, "dlq.stage") == "kafka" {
			t.Errorf("kafka action in the DLQ: %s", recHeader(r, "dlq.reason"))
		}
	}
}
