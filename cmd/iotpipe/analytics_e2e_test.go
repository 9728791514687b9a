package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"github.com/iotpipe/iotpipe/internal/sharedtest"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// End-to-end acceptance tests of the stream analytics in rules (issue 7):
// PEWMA through the running pipeline across a kill -9, and a tumbling
// window over event time.

// relClose reports whether a and b agree to a relative 1e-9.
func relClose(a, b float64) bool {
	if a == b {
		return true
	}
	return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

// pewmaRow is one row of a vectors_*.csv file.
type pewmaRow struct {
	value                  string // as written, sent as the JSON number
	mean, std, probability float64
	skipped                bool // NaN point: no result
	anomaly                bool
}

func readPewmaVectors(t *testing.T, path string) []pewmaRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) < 2 || len(recs[0]) != 6 || recs[0][2] != "mean" {
		t.Fatalf("%s: unexpected layout %v", path, recs[:min(1, len(recs))])
	}
	var rows []pewmaRow
	for i, r := range recs[1:] {
		if r[0] != strconv.Itoa(i) {
			t.Fatalf("%s: row %d has index %s", path, i, r[0])
		}
		row := pewmaRow{value: r[1], anomaly: r[5] == "1"}
		if v, err := strconv.ParseFloat(r[1], 64); err != nil || math.IsNaN(v) || r[4] == "" {
			row.skipped = true
			row.value = `"nan"` // JSON has no NaN: a non-number gives pewma a NaN
		} else {
			for j, p := range []*float64{&row.mean, &row.std, &row.probability} {
				if *p, err = strconv.ParseFloat(r[2+j], 64); err != nil {
					t.Fatalf("%s row %d: %v", path, i, err)
				}
			}
		}
		rows = append(rows, row)
	}
	return rows
}

// PEWMA through the running pipeline, surviving kill -9: the points of
// every ../shared/pewma/vectors_*.csv (sine_spikes, constant, step, and
// missing_points with its NaNs sent as "nan", which JSON cannot carry as a
// number) are published in order, one device per file, QoS 1; `iotpipe
// run` is killed -9 once half of each file is acknowledged and restarted,
// and the rest are published. The rule's output for every point (read
// from iotpipe.actions, deduplicated by idempotency key: a crash may
// re-emit, and a re-emission must carry the same numbers) matches the
// vector file to a relative 1e-9 with the anomaly flag exact (NaN points:
// no result), and iotpipe.anomalies holds records for exactly the flagged
// points.
func TestPewmaPipelineSurvivesKill(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(sharedtest.Path(t, "pewma"), "vectors_*.csv"))
	if err != nil {
		t.Fatal(err)
	}
	vectors := map[string][]pewmaRow{} // device -> points
	for _, f := range files {
		if strings.HasSuffix(f, "_full.csv") {
			continue
		}
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "vectors_"), ".csv")
		vectors["pw-"+strings.ReplaceAll(name, "_", "-")] = readPewmaVectors(t, f)
	}
	if _, ok := vectors["pw-sine-spikes"]; !ok {
		t.Fatalf("vectors_sine_spikes.csv missing from %v", files)
	}
	in := newInstance(t)
	writeRule(t, in, "pewma.sql", `CREATE RULE p AS SELECT topic(2) AS dev, i, value, pewma(value) AS a FROM 'pewma/+'
THEN republish(topic => 'pewma-out/${topic(2)}', qos => 0);`)
	in.start()
	// publish sends points [from, to) of every device, each device in
	// order on its own connection, all devices at once.
	publish := func(half int) {
		t.Helper()
		var wg sync.WaitGroup
		for dev, rows := range vectors {
			from, to := 0, len(rows)/2
			if half == 1 {
				from, to = len(rows)/2, len(rows)
			}
			c := paho.NewClient(paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", in.mqtt)).SetClientID(dev).SetAutoReconnect(false))
			if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Disconnect(100)
				for i := from; i < to; i++ {
					tok := c.Publish("pewma/"+dev, 1, false, fmt.Sprintf(`{"i":%d,"value":%s}`, i, rows[i].value))
					if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
						t.Errorf("%s: publish point %d: %v", dev, i, tok.Error())
						return
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	publish(0)
	in.kill() // right after the acks of the first halves: the processor is mid-stream
	in.start()
	publish(1)

	type point struct {
		dev string
		i   int
	}
	type result struct {
		raw string
		A   *struct {
			Mean, Std, Probability float64
			Anomaly                bool
		} `json:"a"`
	}
	total := 0
	for _, rows := range vectors {
		total += len(rows)
	}
	var byPoint map[point][]result
	dupKeys := 0
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		byPoint = map[point][]result{}
		seen := map[string]string{}
		dupKeys = 0
		for _, r := range in.readTopic(schemas.DefaultTopics().Actions) {
			var act struct {
				Key     string          `json:"key"`
				Rule    string          `json:"rule"`
				Payload json.RawMessage `json:"payload"`
			}
			if err := json.Unmarshal(r.Value, &act); err != nil {
				t.Fatal(err)
			}
			if act.Rule != "p" {
				continue
			}
			if prev, ok := seen[act.Key]; ok {
				dupKeys++
				if prev != string(act.Payload) {
					t.Fatalf("firing %s re-emitted with a different output:\n%s\n%s", act.Key, prev, act.Payload)
				}
				continue
			}
			seen[act.Key] = string(act.Payload)
			var out struct {
				Dev string `json:"dev"`
				I   *int   `json:"i"`
				result
			}
			if err := json.Unmarshal(act.Payload, &out); err != nil || out.I == nil || vectors[out.Dev] == nil {
				t.Fatalf("firing %s: output %s (%v)", act.Key, act.Payload, err)
			}
			out.raw = string(act.Payload)
			k := point{out.Dev, *out.I}
			byPoint[k] = append(byPoint[k], out.result)
		}
		if len(byPoint) == total || time.Now().After(deadline) {
			break
		}
	}
	if len(byPoint) != total {
		t.Fatalf("outputs for %d of %d points", len(byPoint), total)
	}
	flagged := map[point]bool{}
	for dev, rows := range vectors {
		half := len(rows) / 2
		for i, want := range rows {
			if want.anomaly {
				flagged[point{dev, i}] = true
			}
			got := byPoint[point{dev, i}]
			if len(got) != 1 {
				t.Errorf("%s point %d: %d firings with distinct keys, want 1 (the event is in the log once)", dev, i, len(got))
				continue
			}
			a := got[0].A
			if want.skipped {
				if a != nil {
					t.Errorf("%s point %d (NaN): pewma result %+v, want none", dev, i, *a)
				}
				continue
			}
			if a == nil {
				t.Errorf("%s point %d: no pewma result in %s", dev, i, got[0].raw)
				continue
			}
			for j, g := range []float64{a.Mean, a.Std, a.Probability} {
				if w := []float64{want.mean, want.std, want.probability}[j]; !relClose(g, w) {
					t.Errorf("%s point %d: %s = %v, want %v (after the restart: %v)", dev, i, []string{"mean", "std", "probability"}[j], g, w, i >= half)
				}
			}
			if a.Anomaly != want.anomaly {
				t.Errorf("%s point %d: anomaly = %v, want %v", dev, i, a.Anomaly, want.anomaly)
			}
		}
	}

	// iotpipe.anomalies: records for exactly the flagged points.
	if len(flagged) == 0 {
		t.Fatal("the vector files flag no point: nothing to check on iotpipe.anomalies")
	}
	gotAnom := map[point]int{}
	srcOf := map[point]string{}    // point -> iot.src of its anomaly record
	valueOf := map[string]string{} // iot.src -> record value
	for _, r := range in.readTopic(schemas.DefaultTopics().Anomalies) {
		var an schemas.Anomaly
		if err := json.Unmarshal(r.Value, &an); err != nil {
			t.Fatal(err)
		}
		var out struct {
			I *int `json:"i"`
		}
		b, _ := json.Marshal(an.Output)
		if err := json.Unmarshal(b, &out); err != nil || out.I == nil || an.Rule != "p" || vectors[an.Thing] == nil ||
			*out.I >= len(vectors[an.Thing]) || !an.Anomaly || an.Metric != "a" || string(r.Key) != an.Thing {
			t.Errorf("anomaly record %s", r.Value)
			continue
		}
		k := point{an.Thing, *out.I}
		gotAnom[k]++
		// A crash may emit a record again: with the same iot.src (the
		// deterministic id consumers drop duplicates by) and value.
		src := recHeader(r, schemas.HeaderSource)
		if prev, ok := srcOf[k]; ok && prev != src {
			t.Errorf("%v: anomaly records with different iot.src %q and %q: a consumer cannot drop the duplicate", k, prev, src)
		}
		if prev, ok := valueOf[src]; ok && prev != string(r.Value) {
			t.Errorf("anomaly record %s re-emitted with a different value:\n%s\n%s", src, prev, r.Value)
		}
		srcOf[k], valueOf[src] = src, string(r.Value)
		want := vectors[k.dev][k.i]
		if !relClose(an.Mean, want.mean) || !relClose(an.Std, want.std) || !relClose(an.Probability, want.probability) {
			t.Errorf("anomaly record of %v: %s, want mean %v std %v p %v", k, r.Value, want.mean, want.std, want.probability)
		}
		if v, _ := strconv.ParseFloat(want.value, 64); !relClose(an.Value, v) {
			t.Errorf("anomaly record of %v: value %v, want %v", k, an.Value, v)
		}
	}
	dupAnom := 0
	for k := range flagged {
		if gotAnom[k] == 0 {
			t.Errorf("flagged point %v has no record on iotpipe.anomalies", k)
		}
	}
	for k, n := range gotAnom {
		if !flagged[k] {
			t.Errorf("point %v is not flagged, yet iotpipe.anomalies has %d record(s) of it", k, n)
		}
		if n > 1 {
			dupAnom++
		}
	}
	t.Logf("%d points from %d vector files (kill -9 half way through each), %d flagged; %d action records re-emitted after the crash (same output), %d anomalies recorded more than once (same iot.src)",
		total, len(vectors), len(flagged), dupKeys, dupAnom)
}

// A tumbling window over an event-time field, end to end: three devices
// publish readings (shuffled, out of order within the allowed lateness)
// into three 10-second windows each, half of them before a kill -9 of
// `iotpipe run` and half after its restart (every window open across the
// crash), then one later reading each moves the watermark past them;
// iotpipe.aggregates holds every (device, window) once with the right
// count, average and maximum.
func TestTumblingWindowAcrossKill(t *testing.T) {
	in := newInstance(t)
	writeRule(t, in, "win.sql", `CREATE RULE win AS
SELECT clientid() AS device, count(*) AS n, avg(v) AS mean, max(v) AS hi FROM 'win/+'
GROUP BY TUMBLE(INTERVAL 10 SECONDS), clientid() EVENT TIME ts ALLOWED LATENESS 30 SECONDS
THEN republish(topic => 'win-out', qos => 0);`)
	in.start()
	const t0 = int64(1767225600000) // 2026-01-01T00:00:00Z, a multiple of 10 s
	type winKey struct {
		dev   string
		start int64
	}
	type expect struct {
		n        int
		sum, max float64
	}
	want := map[winKey]*expect{}
	rng := rand.New(rand.NewPCG(7, 13))
	// Each device's readings, shuffled: out of order, within the lateness.
	type point struct {
		dev string
		ts  int64
		v   float64
	}
	var pts [3][]point
	for d := range pts {
		dev := fmt.Sprintf("win-%d", d)
		for w := int64(0); w < 3; w++ {
			start := t0 + w*10000
			e := &expect{max: math.Inf(-1)}
			want[winKey{dev, start}] = e
			for j := 0; j < 3+d+int(w); j++ {
				p := point{dev: dev, ts: start + int64(j)*900 + int64(d), v: float64(rng.IntN(1000)) / 8}
				pts[d] = append(pts[d], p)
				e.n++
				e.sum += p.v
				e.max = math.Max(e.max, p.v)
			}
		}
		rng.Shuffle(len(pts[d]), func(i, j int) { pts[d][i], pts[d][j] = pts[d][j], pts[d][i] })
	}
	publish := func(batch []point) {
		t.Helper()
		if len(batch) == 0 {
			return
		}
		dev := batch[0].dev
		c := paho.NewClient(paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", in.mqtt)).SetClientID(dev).SetAutoReconnect(false))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		defer c.Disconnect(100)
		for _, p := range batch {
			if tok := c.Publish("win/"+dev, 1, false, fmt.Sprintf(`{"ts":%d,"v":%v}`, p.ts, p.v)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
		}
	}
	// Half of every device's readings, kill -9 with every window open,
	// restart, the other half.
	half := 0
	for d := range pts {
		publish(pts[d][:len(pts[d])/2])
		half += len(pts[d]) / 2
	}
	// The rules processor has seen them (the windows' state is written)
	// before the kill.
	for deadline := time.Now().Add(20 * time.Second); ruleMatched(t, in, "win") < half; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the window rule matched %d of the %d readings sent", ruleMatched(t, in, "win"), half)
		}
	}
	in.kill()
	in.start()
	for d := range pts {
		publish(pts[d][len(pts[d])/2:])
	}
	// Every device's readings are in the log; now the watermark moves on
	// (devices may share a partition: closing only after all of them keeps
	// none late).
	for d := range pts {
		publish([]point{{dev: fmt.Sprintf("win-%d", d), ts: t0 + 100000, v: 1}})
	}

	var got map[winKey]schemas.Aggregate
	var twice []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		got = map[winKey]schemas.Aggregate{}
		src := map[winKey]string{}
		twice = twice[:0]
		for _, r := range in.readTopic(schemas.DefaultTopics().Aggregates) {
			var a schemas.Aggregate
			if err := json.Unmarshal(r.Value, &a); err != nil {
				t.Fatal(err)
			}
			k := winKey{a.Key, a.WindowStart}
			if _, ok := got[k]; ok { // no crash after any window closed: not even a re-emission
				twice = append(twice, fmt.Sprintf("%v (iot.src %s and %s)", k, src[k], recHeader(r, schemas.HeaderSource)))
			}
			got[k], src[k] = a, recHeader(r, schemas.HeaderSource)
		}
		done := true
		for k := range want {
			if _, ok := got[k]; !ok {
				done = false
			}
		}
		if done || time.Now().After(deadline) {
			break
		}
	}
	for _, w := range twice {
		t.Errorf("window emitted twice: %s", w)
	}
	for k, e := range want {
		a, ok := got[k]
		if !ok {
			t.Errorf("no aggregate for device %s window [%d, +10s)", k.dev, k.start-t0)
			continue
		}
		mean := e.sum / float64(e.n)
		if a.Rule != "win" || a.WindowEnd != k.start+10000 || a.Count != int64(e.n) || a.Values["n"] != float64(e.n) ||
			!relClose(a.Values["mean"], mean) || a.Values["hi"] != e.max || a.Revision != 0 {
			t.Errorf("device %s window [%d, +10s): %+v, want n=%d mean=%v hi=%v", k.dev, k.start-t0, a, e.n, mean, e.max)
		}
		out, _ := a.Output.(map[string]any)
		if out["device"] != k.dev || out["n"] != float64(e.n) {
			t.Errorf("device %s window [%d, +10s): output %v", k.dev, k.start-t0, a.Output)
		}
	}
	for k, a := range got {
		if _, ok := want[k]; !ok && k.start != t0+100000 {
			t.Errorf("unexpected window %v: %+v", k, a)
		}
	}
	// No reading so far was late; one for the first window now is (the
	// watermark passed its end plus the lateness long ago): it goes to
	// the DLQ with the reason, and no window is revised.
	for _, r := range in.readTopic(schemas.DefaultTopics().DLQ) {
		t.Errorf("DLQ record: stage %s reason %s", recHeader(r, "dlq.stage"), recHeader(r, "dlq.reason"))
	}
	publish([]point{{dev: "win-0", ts: t0 + 500, v: 1000}})
	var late []*kgo.Record
	for deadline := time.Now().Add(30 * time.Second); len(late) == 0 && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		late = in.readTopic(schemas.DefaultTopics().DLQ)
	}
	if len(late) != 1 || recHeader(late[0], "dlq.stage") != "rules" || recHeader(late[0], "dlq.rule") != "win" ||
		!strings.Contains(recHeader(late[0], "dlq.reason"), "late") || string(late[0].Value) != fmt.Sprintf(`{"ts":%d,"v":1000}`, t0+500) {
		for _, r := range late {
			t.Errorf("DLQ record %s: stage %q rule %q reason %q", r.Value, recHeader(r, "dlq.stage"), recHeader(r, "dlq.rule"), recHeader(r, "dlq.reason"))
		}
		t.Fatalf("the late reading: %d DLQ records, want 1 of stage rules", len(late))
	}
	for _, r := range in.readTopic(schemas.DefaultTopics().Aggregates) {
		if a := (schemas.Aggregate{}); json.Unmarshal(r.Value, &a) == nil && a.Revision > 0 {
			t.Errorf("a window was revised by the late reading: %s", r.Value)
		}
	}
	// The closed windows fired the rule's action too.
	fired := 0
	for _, r := range in.readTopic(schemas.DefaultTopics().Actions) {
		if recHeader(r, "iot.rule") == "win" {
			fired++
		}
	}
	if fired < len(want) {
		t.Errorf("%d action records of the window rule, want at least %d", fired, len(want))
	}
	t.Logf("%d windows over 3 devices, each with its count, mean and max; %d action firings", len(want), fired)
}

// ruleMatched returns the matched counter of a rule at /api/rules, -1 if
// unreadable.
func ruleMatched(t *testing.T, in *instance, rule string) int {
	t.Helper()
	resp, err := http.Get(in.url("/api/rules"))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var st struct {
		Rules []struct {
			Name    string `json:"name"`
			Matched int    `json:"matched"`
		} `json:"rules"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return -1
	}
	for _, r := range st.Rules {
		if r.Name == rule {
			return r.Matched
		}
	}
	return -1
}
