package rules

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/internal/sharedtest"
	"github.com/iotpipe/iotpipe/schemas"
)

// TestPewmaAnomalies runs every ../shared/pewma vector through a rule in
// the processor (state in the harness's Pebble, one event per point):
// anomaly records appear exactly at the points flagged in the vectors,
// with the vector's mean, std and probability (relative 1e-9), and each
// fires the rule's action.
func TestPewmaAnomalies(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(sharedtest.Path(t), "pewma", "vectors_*.csv"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no pewma vectors: %v", err)
	}
	const src = `CREATE RULE spikes AS SELECT value, pewma(value) AS a FROM 'v/+' WHERE a.anomaly
THEN kafka(topic => 'spikes', key => '${clientid()}')`
	for _, file := range files {
		if strings.HasSuffix(file, "_full.csv") {
			continue
		}
		t.Run(filepath.Base(file), func(t *testing.T) {
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			recs, err := csv.NewReader(f).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			g := newRig(t, src, Options{})
			flagged := 0
			for _, r := range recs[1:] {
				v := r[1]
				if _, err := strconv.ParseFloat(v, 64); err != nil || v == "nan" {
					v = `"nan"` // JSON has no NaN: pewma skips a non-number
				}
				out := g.publish("dev", "v/1", fmt.Sprintf(`{"value": %s}`, v))
				an := only(out, topics.Anomalies)
				want := r[5] == "1"
				if want != (len(an) == 1) || len(an) > 1 {
					t.Fatalf("point %s: %d anomaly records, want flagged=%v", r[0], len(an), want)
				}
				if acts := actions(t, out); len(acts) != len(an) {
					t.Errorf("point %s: %d actions for %d anomalies", r[0], len(acts), len(an))
				}
				if !want {
					continue
				}
				flagged++
				var a schemas.Anomaly
				if err := json.Unmarshal(an[0].Value, &a); err != nil {
					t.Fatal(err)
				}
				for j, got := range []float64{a.Mean, a.Std, a.Probability} {
					w, _ := strconv.ParseFloat(r[2+j], 64)
					if !closeTo(got, w) {
						t.Errorf("point %s: %s = %v, want %v", r[0], []string{"mean", "std", "probability"}[j], got, w)
					}
				}
				x, _ := strconv.ParseFloat(r[1], 64)
				if !a.Anomaly || a.Metric != "a" || a.Rule != "spikes" || a.Thing != "dev" || !closeTo(a.Value, x) || string(an[0].Key) != "dev" {
					t.Errorf("point %s: anomaly = %+v (value want %v)", r[0], a, x)
				}
			}
			t.Logf("%d flagged points", flagged)
		})
	}
}

func closeTo(a, b float64) bool {
	if a == b {
		return true
	}
	return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

func aggregates(t *testing.T, recs []byte) schemas.Aggregate {
	t.Helper()
	var a schemas.Aggregate
	if err := json.Unmarshal(recs, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestTumblingWindowByReceiveTime(t *testing.T) {
	src := `CREATE RULE per_minute AS
SELECT clientid() AS device, count(*) AS n, avg(t) AS mean, max(t) AS hi FROM 's/+'
GROUP BY TUMBLE(INTERVAL 1 MINUTE), clientid()
THEN kafka(topic => 'minutes', key => '${clientid()}')`
	g := newRig(t, src, Options{})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) { g.h.Now = t0.Add(d) }
	at(1 * time.Second)
	g.publish("a", "s/a", `{"t": 1}`)
	at(2 * time.Second)
	g.publish("b", "s/b", `{"t": 10}`)
	at(30 * time.Second)
	g.publish("a", "s/a", `{"t": 3}`)
	g.publish("a", "s/a", `{"x": "no t"}`) // counted by count(*), not by avg(t)
	at(61 * time.Second)                   // next window: [0, 60s) closes
	out := g.publish("a", "s/a", `{"t": 100}`)
	ag := only(out, topics.Aggregates)
	if len(ag) != 2 {
		t.Fatalf("aggregates = %d records: %v", len(ag), out)
	}
	a, b := aggregates(t, ag[0].Value), aggregates(t, ag[1].Value)
	if a.Key != "a" || a.WindowStart != t0.UnixMilli() || a.WindowEnd != t0.Add(time.Minute).UnixMilli() ||
		a.Values["n"] != 3 || a.Values["mean"] != 2 || a.Values["hi"] != 3 || a.Count != 3 || a.Thing != "a" || a.Rule != "per_minute" {
		t.Errorf("window a = %+v", a)
	}
	if b.Key != "b" || b.Values["n"] != 1 || b.Values["mean"] != 10 {
		t.Errorf("window b = %+v", b)
	}
	acts := actions(t, out)
	if len(acts) != 2 || acts[0].Params["key"] != "a" || acts[1].Params["key"] != "b" {
		t.Fatalf("actions = %+v", acts)
	}
	if row, _ := acts[0].Payload.(map[string]any); row["device"] != "a" || row["n"] != float64(3) {
		t.Errorf("action payload = %v", acts[0].Payload)
	}
	if !strings.HasPrefix(acts[0].Key, fmt.Sprintf("0/w%d.0.", t0.UnixMilli())) || !strings.HasSuffix(acts[0].Key, "/per_minute/0") {
		t.Errorf("action key = %s", acts[0].Key)
	}
	// The partition goes quiet: a tick after the window's end closes it.
	at(119 * time.Second)
	if n := len(only(g.tick(), topics.Aggregates)); n != 0 {
		t.Errorf("tick before the window's end closed %d windows", n)
	}
	at(121 * time.Second)
	ag = only(g.tick(), topics.Aggregates)
	if len(ag) != 1 || aggregates(t, ag[0].Value).Values["hi"] != 100 {
		t.Errorf("tick: %d aggregates", len(ag))
	}
	// After a restart the quiet time is counted from the restart (and the
	// stored watermark may read lower than before by less than a window),
	// so the next window closes at most a window later than without it.
	at(130 * time.Second)
	g.publish("a", "s/a", `{"t": 7}`) // window [120s, 180s)
	g.restart()
	at(200 * time.Second)
	if n := len(only(g.tick(), topics.Aggregates)); n != 0 {
		t.Errorf("first tick after the restart closed %d windows", n)
	}
	at(249 * time.Second)
	if n := len(only(g.tick(), topics.Aggregates)); n != 0 {
		t.Errorf("49 s after the restart: closed %d windows", n)
	}
	var closed []float64
	for _, s := range []time.Duration{255, 270, 290, 310, 320} {
		at(s * time.Second)
		for _, r := range only(g.tick(), topics.Aggregates) {
			closed = append(closed, aggregates(t, r.Value).Values["hi"])
		}
	}
	if len(closed) != 1 || closed[0] != 7 {
		t.Errorf("closed after the restart: %v", closed)
	}
}

func TestHoppingWindowEventTimeLateAndRestart(t *testing.T) {
	src := `CREATE RULE hop AS
SELECT count(*) AS n, sum(v) AS total, percentile(v, 50) AS median FROM 'm/+'
GROUP BY HOP(INTERVAL 10 SECONDS, INTERVAL 5 SECONDS) EVENT TIME ts ALLOWED LATENESS 2 SECONDS`
	g := newRig(t, src, Options{})
	send := func(ts int64, v float64) []*kgo.Record {
		return g.publish("d", "m/d", fmt.Sprintf(`{"ts": %d, "v": %v}`, ts, v))
	}
	var got []string
	collect := func(recs []*kgo.Record) {
		for _, r := range only(recs, topics.Aggregates) {
			a := aggregates(t, r.Value)
			got = append(got, fmt.Sprintf("[%d,%d) n=%v total=%v median=%v", a.WindowStart, a.WindowEnd, a.Values["n"], a.Values["total"], a.Values["median"]))
		}
	}
	collect(send(1000, 1))
	collect(send(6000, 2))
	collect(send(4000, 3)) // out of order, within its windows
	g.restart()            // mid-window: the state store carries on
	collect(send(9000, 4))
	collect(send(12500, 5)) // watermark 12.5 s: [-5,5) closed at 7 s, [0,10) at 12 s
	if want := []string{"[-5000,5000) n=2 total=4 median=2", "[0,10000) n=4 total=10 median=2.5"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("after 12.5 s: %v, want %v", got, want)
	}
	out := send(4500, 100) // late: [-5,5) and [0,10) have closed: DLQ
	dlq := only(out, topics.DLQ)
	if len(dlq) != 1 || !strings.Contains(header(dlq[0], "dlq.reason"), "late event") || header(dlq[0], "dlq.rule") != "hop" {
		t.Fatalf("late event: dlq %v", dlq)
	}
	collect(out)
	got = got[:0]
	collect(send(17100, 6)) // closes [5,15) at 17 s
	if want := []string{"[5000,15000) n=3 total=11 median=4"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("after 17.1 s: %v, want %v", got, want)
	}
	// An event time that is not a number is bad input: DLQ.
	out = g.publish("d", "m/d", `{"ts": "yesterday", "v": 1}`)
	if dlq := only(out, topics.DLQ); len(dlq) != 1 || !strings.Contains(header(dlq[0], "dlq.reason"), "event time") {
		t.Errorf("bad event time: %v", out)
	}
}

// One device whose clock says 2100 does not poison its partition: its
// event (past the receive time by more than the allowed skew) goes to
// the DLQ with the reason, and the other devices' events keep being
// aggregated, not dropped as late (issue 21 item 10).
func TestFutureEventTimeGoesToDLQ(t *testing.T) {
	src := `CREATE RULE per_minute AS
SELECT clientid() AS device, count(*) AS n FROM 'f/+'
GROUP BY TUMBLE(INTERVAL 1 MINUTE), clientid() EVENT TIME ts`
	g := newRig(t, src, Options{})
	now := g.h.Now.UnixMilli()
	send := func(thing string, ts int64) []*kgo.Record {
		return g.publish(thing, "f/"+thing, fmt.Sprintf(`{"ts": %d}`, ts))
	}
	out := send("broken-clock", time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	dlq := only(out, topics.DLQ)
	if len(dlq) != 1 || !strings.Contains(header(dlq[0], "dlq.reason"), "past the receive time") {
		t.Fatalf("an event time in 2100: %d DLQ records (%v), want 1 naming the skew", len(dlq), out)
	}
	for i := range 5 {
		if dlq := only(send("good", now+int64(i)), topics.DLQ); len(dlq) != 0 {
			t.Fatalf("a good device's event %d went to the DLQ: %s", i, header(dlq[0], "dlq.reason"))
		}
	}
	// Within the skew (MaxEventSkew, 15 minutes by default): taken.
	if dlq := only(send("fast-clock", now+10*60*1000), topics.DLQ); len(dlq) != 0 {
		t.Fatalf("an event time 10 minutes ahead went to the DLQ: %s", header(dlq[0], "dlq.reason"))
	}
}
