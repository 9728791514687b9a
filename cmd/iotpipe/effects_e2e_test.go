package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
)

// Acceptance tests of "event sourcing that holds" (issue 20): deriving
// state again (a lost disk, the events' retention, a node killed) never
// repeats an effect in the world, and node flags do not change derived
// state.

// effectRules are rules with every kind of effect and every kind of
// state: a webhook, a command (outbound), a kafka action, PEWMA, a
// window and a FOR timer (long enough not to fire during the test, so
// the state is only what the events make it).
func effectRules(rx *hookReceiver) string {
	return `CREATE RULE hook AS SELECT dev, seq FROM 'es/+' THEN webhook(url => '` + rx.url("/hook") + `');
CREATE RULE cmd AS SELECT dev, seq FROM 'es/+' WHERE seq % 5 = 0
THEN command(thing => '${dev}', topic => 'escmd/${dev}', payload => '{"go": ${seq}}');
CREATE RULE fwd AS SELECT dev, seq FROM 'es/+' THEN kafka(topic => 'alerts');
CREATE RULE score AS SELECT dev, pewma(seq) AS a FROM 'es/+' WHERE a.anomaly THEN republish(topic => 'es-anomaly', qos => 0);
CREATE RULE win AS SELECT clientid() AS device, count(*) AS n FROM 'es/+'
GROUP BY TUMBLE(INTERVAL 1 HOUR), clientid() THEN republish(topic => 'es-win', qos => 0);
CREATE RULE stuck AS SELECT dev FROM 'es/+' WHERE seq >= 0 FOR 1 HOUR THEN republish(topic => 'es-stuck', qos => 0);
`
}

// createTopic creates a topic on the instance's log.
func (in *instance) createTopic(topic string) {
	in.t.Helper()
	cl, err := in.logClients().Client()
	if err != nil {
		in.t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), 4, -1, nil, topic); err != nil {
		in.t.Fatal(err)
	}
}

// sources returns the id of every committed record of topic (iot.src
// for what processors emit, iot.action, the idempotency key, for what
// action executors write), with how many records carry it.
func (in *instance) sources(topic string) map[string]int {
	in.t.Helper()
	out := map[string]int{}
	for _, r := range in.readTopic(topic) {
		id := recHeader(r, schemas.HeaderSource)
		if id == "" {
			id = "action " + recHeader(r, "iot.action")
		}
		out[id]++
	}
	return out
}

// dumpState returns the state of the stopped instance's processors.
func (in *instance) dumpState(dir string) map[string]map[string]string {
	in.t.Helper()
	out := map[string]map[string]string{}
	for _, p := range []string{"lastseen", "rules", "shadow"} {
		d, err := processors.DumpState(dir, p)
		if err != nil {
			in.t.Fatal(err)
		}
		out[p] = d
	}
	return out
}

// waitQuiet waits until the receiver got every firing of rule hook for
// the events in the log, and the outbound, actions and alerts topics
// stop growing.
func (in *instance) waitQuiet(rx *hookReceiver) {
	in.t.Helper()
	rx.awaitAll(in.firings("es/", "hook"), 60*time.Second)
	last := -1
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		n := len(in.readTopic("iotpipe.outbound")) + len(in.readTopic("iotpipe.actions")) + len(in.readTopic("alerts"))
		if n == last {
			return
		}
		last = n
	}
	in.t.Fatal("derived topics kept growing with no load")
}

// checkNoRepeats checks that no record of topic shares its iot.src with
// another (an output of one event emitted twice), and that what was
// added since before comes from no event handled before.
func checkNoRepeats(t *testing.T, topic string, before, after map[string]int) {
	t.Helper()
	for src, n := range after {
		if n > 1 {
			t.Errorf("%s: %d records with iot.src %s", topic, n, src)
		}
		if before[src] == 0 {
			t.Errorf("%s: a new record (iot.src %s) after the state was derived again", topic, src)
		}
	}
	if len(after) != len(before) {
		t.Errorf("%s: %d records before, %d after the state was derived again", topic, len(before), len(after))
	}
}

// Rules with webhook, command and kafka actions fire under load; iotpipe
// stops; its processor state is deleted (a lost disk, a new machine);
// iotpipe starts again: the receiver gets no Idempotency-Key again, the
// outbound, actions and kafka topics get no new record, and last-seen,
// PEWMA, window and timer state equal the state before, byte for byte.
// Then the same after the events topic lost its records (retention).
func TestStateLossRepeatsNoEffects(t *testing.T) {
	rx := newHookReceiver(t, "", 200)
	in := newInstance(t)
	writeRule(t, in, "effects.sql", effectRules(rx))
	in.start()
	in.createTopic("alerts")
	l := startLoad(t, in, "es/", 6, 10*time.Millisecond, true)
	time.Sleep(3 * time.Second)
	l.end()
	if l.acked.Load() < 100 {
		t.Fatalf("only %d publishes acknowledged", l.acked.Load())
	}
	in.waitQuiet(rx)
	keys := rx.delivered()
	topics := []string{"iotpipe.outbound", "iotpipe.actions", "alerts"}
	before := map[string]map[string]int{}
	for _, tp := range topics {
		before[tp] = in.sources(tp)
	}
	if len(before["alerts"]) < 100 || len(before["iotpipe.outbound"]) < 20 {
		t.Fatalf("too few effects: %d kafka actions, %d outbound records", len(before["alerts"]), len(before["iotpipe.outbound"]))
	}
	in.stop()
	state := filepath.Join(in.dataDir, "state")
	want := in.dumpState(state)

	for _, stage := range []string{"state deleted", "state deleted after the events' retention"} {
		if strings.Contains(stage, "retention") {
			in.deleteEvents()
		}
		if err := os.RemoveAll(state); err != nil {
			t.Fatal(err)
		}
		in.start()
		// Give a wrong implementation time to repeat itself.
		time.Sleep(3 * time.Second)
		for k, n := range rx.delivered() {
			if n != keys[k] {
				t.Errorf("%s: Idempotency-Key %s received %d times (%d before)", stage, k, n, keys[k])
			}
		}
		for _, tp := range topics {
			checkNoRepeats(t, tp, before[tp], in.sources(tp))
		}
		in.stop()
		got := in.dumpState(state)
		for p, kv := range want {
			if !maps.Equal(kv, got[p]) {
				t.Errorf("%s: %s state differs after the restore (%d keys before, %d after)", stage, p, len(kv), len(got[p]))
			}
		}
		if t.Failed() {
			return
		}
	}
	t.Logf("%d publishes; %d webhook keys, %d kafka actions, %d outbound records: none repeated after losing the state twice", l.acked.Load(), len(keys), len(before["alerts"]), len(before["iotpipe.outbound"]))
}

// deleteEvents deletes every record of the events topic (what the
// retention does to old records), with the instance's log running on a
// log-only node.
func (in *instance) deleteEvents() {
	in.t.Helper()
	node := in.startIngest()
	defer func() { node.Process.Signal(os.Interrupt); node.Wait() }()
	cl, err := in.logClients().Client()
	if err != nil {
		in.t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	ends, err := adm.ListEndOffsets(ctx, schemas.DefaultTopics().Events)
	if err != nil {
		in.t.Fatal(err)
	}
	if _, err := adm.DeleteRecords(ctx, ends.Offsets()); err != nil {
		in.t.Fatal(err)
	}
	if n := len(in.readEvents()); n != 0 {
		in.t.Fatalf("%d events left after deleting them", n)
	}
}

// Two `iotpipe process` nodes (with `iotpipe ingest` and `iotpipe sink`);
// one is killed with kill -9 under load while rules fire and shadows are
// updated: every Idempotency-Key reaches the receiver once, every
// shadow's version is its number of updates, and the survivor's shadows
// equal a rebuild from the log.
func TestProcessNodeKilledRepeatsNoEffects(t *testing.T) {
	rx := newHookReceiver(t, "", 200)
	in := newInstance(t)
	writeRule(t, in, "hook.sql", `CREATE RULE hook AS SELECT dev, seq FROM 'es/+' THEN webhook(url => '`+rx.url("/hook")+`');`)
	in.startIngest()
	in.startSinkNode()
	a := in.startProcess("proc-a")
	b := in.startProcess("proc-b")
	l := startLoad(t, in, "es/", 6, 10*time.Millisecond, true)
	shadows := startShadowLoad(t, in, 10)
	time.Sleep(3 * time.Second)
	a.cmd.Process.Kill() // kill -9 under load
	a.cmd.Wait()
	time.Sleep(4 * time.Second)
	l.end()
	updates := shadows.end(in)
	want := in.firings("es/", "hook")
	rx.awaitAll(want, 90*time.Second)
	for k, n := range rx.delivered() {
		if n > 1 {
			t.Errorf("Idempotency-Key %s received %d times", k, n)
		}
	}
	// Shadow versions are gapless: each thing's version is its number
	// of accepted updates in the log.
	deadline := time.Now().Add(60 * time.Second)
	for thing, n := range updates {
		for {
			v := shadowVersion(t, in.url(""), thing)
			if v == n {
				break
			}
			if v > n || time.Now().After(deadline) {
				t.Fatalf("%s: version %d after %d updates", thing, v, n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	// The survivor's state equals a rebuild from the log.
	b.cmd.Process.Signal(os.Interrupt)
	b.cmd.Wait()
	live, err := processors.DumpState(filepath.Join(in.dataDir, "proc-b", "state"), shadow.Name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := processors.Rebuild(ctx, in.logClients(), schemas.DefaultTopics().Events,
		[]processors.Processor{shadow.New(shadow.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rebuilt, err := h.Dump(shadow.Name)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(shadowDocKeys(live), shadowDocKeys(rebuilt)) {
		t.Fatalf("the survivor's shadows (%d keys) differ from a rebuild (%d keys)", len(live), len(rebuilt))
	}
	t.Logf("kill -9 of one of two process nodes: %d firings each received once, %d shadows gapless and equal to a rebuild", len(want), len(updates))
}

// shadowDocKeys keeps the shadow documents of a dump keyed
// "<partition>/<key>" by key (partitions may differ in number between a
// rebuild and a node), leaving out bookkeeping keys.
func shadowDocKeys(dump map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range dump {
		_, key, _ := strings.Cut(k, "/")
		if !strings.HasPrefix(key, "\x00") {
			out[key] = v
		}
	}
	return out
}

// shadowLoad updates the classic shadows of some things through the
// HTTP shadow API (on the ingest node) until ended.
type shadowLoad struct {
	stop chan struct{}
	done chan struct{}
}

func startShadowLoad(t *testing.T, in *instance, things int) *shadowLoad {
	s := &shadowLoad{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for round := 0; ; round++ {
			for i := range things {
				select {
				case <-s.stop:
					return
				default:
				}
				thing := fmt.Sprintf("lamp-%d", i)
				body := fmt.Sprintf(`{"state":{"reported":{"round":%d}}}`, round)
				req, _ := http.NewRequest(http.MethodPost, in.url("/things/"+thing+"/shadow"), strings.NewReader(body))
				req.Header.Set("X-Client-Id", thing)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return s
}

// end stops the load and returns, per thing, the shadow updates the log
// holds (each one is accepted: valid, no version given).
func (s *shadowLoad) end(in *instance) map[string]int64 {
	close(s.stop)
	<-s.done
	n := map[string]int64{}
	for _, r := range in.readEvents() {
		env, err := schemas.DecodeEnvelope(r.Headers)
		if err != nil {
			in.t.Fatal(err)
		}
		if req, ok := shadow.ParseTopic(env.Topic); ok && req.Op == shadow.OpUpdate {
			n[req.Thing]++
		}
	}
	return n
}

// shadowVersion reads thing's shadow version through the HTTP shadow
// API of the ingest node (0 when missing).
func shadowVersion(t *testing.T, ingestURL, thing string) int64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, ingestURL+"/things/"+thing+"/shadow", nil)
	req.Header.Set("X-Client-Id", thing)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var doc struct {
		Version int64 `json:"version"`
	}
	json.NewDecoder(resp.Body).Decode(&doc)
	return doc.Version
}

// `iotpipe ingest --dev` with `iotpipe process` (no --dev): requests on a
// shadow from clients other than the thing (an app over MQTT, a caller
// of the HTTP shadow API) are applied: ingest decided, and the processor
// trusts the log whatever its node's flags.
func TestShadowRequestsAppliedWhateverTheProcessFlags(t *testing.T) {
	in := newInstance(t)
	in.startIngest()
	in.startProcess("proc")
	mosquittoPub(t, in, "phone-app", "$aws/things/lamp-7/shadow/update", `{"state":{"desired":{"on":true}}}`)
	req, _ := http.NewRequest(http.MethodPost, in.url("/things/lamp-7/shadow"), bytes.NewBufferString(`{"state":{"desired":{"level":3}}}`))
	req.Header.Set("X-Client-Id", "fleet-service")
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.DefaultClient.Do(req.Clone(context.Background()))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			if !bytes.Contains(b, []byte(`"version":2`)) {
				t.Fatalf("HTTP update of lamp-7's shadow by another client: %s, want version 2 (the MQTT update applied first)", b)
			}
			break
		}
		if resp.StatusCode != http.StatusGatewayTimeout || time.Now().After(deadline) {
			t.Fatalf("HTTP update of lamp-7's shadow by another client: %d %s", resp.StatusCode, b)
		}
		req.Body = io.NopCloser(bytes.NewBufferString(`{"state":{"desired":{"level":3}}}`))
	}
}

// The process crashes (a test failpoint: exit at once, as kill -9) after
// producing a batch's derived records, before its transaction commits,
// or after that and before its local state commits; restarted, it goes
// on: the anomalies, aggregates and rule_outputs rows in ClickHouse are
// each there exactly once, as many as the committed derived records.
func TestDerivedRowsExactlyOnceAcrossCrash(t *testing.T) {
	for _, where := range []string{"before-commit", "after-commit"} {
		t.Run(where, func(t *testing.T) {
			in, ch := clickhouseInstance(t)
			writeRule(t, in, "derived.sql", `CREATE RULE spikes AS SELECT topic(2) AS dev, pewma(v) AS a FROM 'dr/+' WHERE a.anomaly
THEN republish(topic => 'dr-anomaly', qos => 0);
CREATE RULE per2s AS SELECT clientid() AS device, count(*) AS n, max(v) AS hi FROM 'dr/+'
GROUP BY TUMBLE(INTERVAL 2 SECONDS), clientid() THEN clickhouse(table => 'rule_outputs');
CREATE RULE hot AS SELECT topic(2) AS dev, v FROM 'dr/+' WHERE v > 50 THEN clickhouse(table => 'rule_outputs');`)
			in.env = []string{FailpointEnv + "=" + where + ":6"}
			in.start(ch...)
			exited := make(chan error, 1)
			cmd := in.cmd
			go func() { exited <- cmd.Wait() }()
			publishSpiky(t, in, 4, exited)
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				t.Fatal("the failpoint never fired")
			}
			in.cmd = nil
			in.env = nil
			in.start(ch...)
			publishSpiky(t, in, 4, nil)
			// Windows close as the watermark moves on: wait until the
			// derived topics are quiet and ClickHouse holds them.
			counts := func() (int, int, int) {
				an := len(in.readTopic(schemas.DefaultTopics().Anomalies))
				ag := len(in.readTopic(schemas.DefaultTopics().Aggregates))
				ro := 0
				for _, r := range in.readTopic(schemas.DefaultTopics().Actions) {
					var a struct{ Type string }
					if json.Unmarshal(r.Value, &a) == nil && a.Type == "clickhouse" {
						ro++
					}
				}
				return an, ag, ro
			}
			var an, ag, ro int
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
				a2, g2, r2 := counts()
				if a2 == an && g2 == ag && r2 == ro && an > 0 {
					break
				}
				an, ag, ro = a2, g2, r2
				if time.Now().After(deadline) {
					t.Fatal("derived topics kept growing")
				}
			}
			if an == 0 || ag == 0 || ro == 0 {
				t.Fatalf("too little derived: %d anomalies, %d aggregates, %d rule outputs", an, ag, ro)
			}
			in.waitSQL(t, ch, "SELECT count(), uniqExact(thing, rule, metric, detected_at) FROM anomalies", fmt.Sprintf("%d,%d", an, an))
			in.waitSQL(t, ch, "SELECT count(), uniqExact(thing, rule, window_start) FROM aggregates", fmt.Sprintf("%d,%d", ag, ag))
			in.waitSQL(t, ch, "SELECT count(), uniqExact(key) FROM rule_outputs", fmt.Sprintf("%d,%d", ro, ro))
			t.Logf("crash %s: %d anomalies, %d aggregates, %d rule outputs, each one row", where, an, ag, ro)
		})
	}
}

// publishSpiky publishes, from devices devices, values around 20 with a
// spike of 100 every 15th, at 200 messages a second, for 3 seconds or
// until stop is ready.
func publishSpiky(t *testing.T, in *instance, devices int, stop chan error) {
	t.Helper()
	var cls []paho.Client
	for d := range devices {
		cl := paho.NewClient(paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", in.mqtt)).
			SetClientID(fmt.Sprintf("dr-%d", d)).SetAutoReconnect(false))
		if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		cls = append(cls, cl)
	}
	defer func() {
		for _, cl := range cls {
			cl.Disconnect(50)
		}
	}()
	end := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(end); i++ {
		select {
		case err := <-stop:
			stop <- err
			return
		default:
		}
		for d, cl := range cls {
			v := 20.0 + float64((i*7+d)%5)*0.3
			if i%15 == 14 {
				v = 100
			}
			cl.Publish(fmt.Sprintf("dr/dr-%d", d), 1, false, fmt.Sprintf(`{"v":%g}`, v))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
