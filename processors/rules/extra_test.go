package rules

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas"
)

// TestGreenhouseRuleFile is the greenhouse acceptance up to the actions
// topic: the shipped example fires a command to greenhouse/<id>/shade
// above the threshold and nothing below it.
func TestGreenhouseRuleFile(t *testing.T) {
	p := New(Options{})
	if err := p.Reload(filepath.Join("testdata", "greenhouse.sql")); err != nil {
		t.Fatal(err)
	}
	h, err := processors.NewHarness(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	pub := func(lux int) []schemas.Action {
		recs, err := h.Publish(context.Background(), "gh-7", schemas.Envelope{Topic: "greenhouse/gh-7/lux", ClientID: "gh-7"}, fmt.Appendf(nil, `{"lux": %d}`, lux))
		if err != nil {
			t.Fatal(err)
		}
		return actions(t, recs)
	}
	if acts := pub(35000); len(acts) != 0 {
		t.Errorf("at the threshold: %+v", acts)
	}
	acts := pub(35001)
	if len(acts) != 1 {
		t.Fatalf("above the threshold: %+v", acts)
	}
	a := acts[0]
	if a.Type != "command" || a.Key != "0/1/greenhouse_shade/0" || a.Params["topic"] != "greenhouse/gh-7/shade" ||
		a.Params["thing"] != "gh-7" || a.Params["payload"] != `{"shade": "close", "lux": 35001}` {
		t.Errorf("command = %+v", a)
	}
}

// TestReloadWhileProcessing swaps rule sets while events are processed
// (run with -race): every event sees one whole set.
func TestReloadWhileProcessing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.sql")
	write := func(i int) {
		src := fmt.Sprintf("CREATE RULE r AS SELECT v FROM 'a/+' THEN kafka(topic => 'v%d'), kafka(topic => 'v%d')", i, i)
		os.WriteFile(path, []byte(src), 0o644)
		mt := time.Unix(int64(1000+i), 0)
		os.Chtimes(path, mt, mt)
	}
	write(0)
	p := New(Options{})
	if err := p.Reload(dir); err != nil {
		t.Fatal(err)
	}
	h, err := processors.NewHarness(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			write(i)
			if err := p.Reload(dir); err != nil {
				t.Error(err)
				return
			}
			p.Status()
		}
	}()
	for range 300 {
		recs, err := h.Publish(context.Background(), "d", schemas.Envelope{Topic: "a/1"}, []byte(`{"v": 1}`))
		if err != nil {
			t.Fatal(err)
		}
		acts := actions(t, recs)
		if len(acts) != 2 || acts[0].Params["topic"] != acts[1].Params["topic"] {
			t.Fatalf("one event saw two sets: %+v", acts)
		}
	}
	close(stop)
	wg.Wait()
}

// FuzzProcess sends arbitrary payloads and topics through every kind of
// rule: nothing panics, and the only errors are DLQ records.
func FuzzProcess(f *testing.F) {
	f.Add("greenhouse/gh-1/lux", []byte(`{"lux": 50000}`))
	f.Add("fridge/f/state", []byte(`{"state":{"reported":{"DoorOpened":true}}}`))
	f.Add("m/d", []byte(`{"ts": 1e300, "v": "x"}`))
	f.Add("m/d", []byte(`{"ts": -9223372036854775808, "v": 1}`))
	f.Add("greenhouse/+/lux", []byte{0xff, 0})
	src := greenhouse + ";" + fridge + `;
CREATE RULE spikes AS SELECT pewma(lux) AS a FROM 'greenhouse/+/lux' WHERE a.anomaly THEN kafka(topic => 's');
CREATE RULE hop AS SELECT count(*) AS n, percentile(v, 50) AS m FROM 'm/+' GROUP BY HOP(INTERVAL 10 SECONDS, INTERVAL 5 SECONDS) EVENT TIME ts
THEN republish(topic => 'agg/${topic(2)}')`
	g := newRig(f, src, Options{})
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		recs, err := g.h.Publish(context.Background(), "thing", schemas.Envelope{Topic: topic}, payload)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Topic == topics.DLQ && header(r, "dlq.rule") == "" {
				t.Fatalf("runtime DLQ (processor error): %s", header(r, "dlq.reason"))
			}
		}
		g.h.Now = g.h.Now.Add(time.Second)
		if _, err := g.h.Tick(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
	})
}

// TestOfflineForDuration is the delayed lifecycle alert: a device
// offline for 15 minutes fires once; one that reconnects earlier does
// not.
func TestOfflineForDuration(t *testing.T) {
	g := newRig(t, `CREATE RULE offline AS SELECT clientId FROM '$aws/events/presence/+/+'
WHERE eventType = 'disconnected' FOR 15 MINUTES
THEN webhook(url => 'http://h/offline/${clientId}')`, Options{})
	t0 := g.h.Now
	presence := func(dev string, typ schemas.EventType, at time.Duration) []schemas.Action {
		g.h.Now = t0.Add(at)
		recs, err := g.h.Publish(context.Background(), dev, schemas.Envelope{Type: typ, Topic: "$aws/events/presence/" + string(typ) + "/" + dev, ClientID: dev},
			fmt.Appendf(nil, `{"clientId": %q, "eventType": %q}`, dev, typ))
		if err != nil {
			t.Fatal(err)
		}
		return actions(t, recs)
	}
	presence("a", schemas.EventDisconnected, 0)
	presence("b", schemas.EventDisconnected, time.Minute)
	presence("b", schemas.EventConnected, 10*time.Minute) // back before 15 minutes
	g.h.Now = t0.Add(15 * time.Minute)
	acts := actions(t, g.tick())
	if len(acts) != 1 || acts[0].Params["url"] != "http://h/offline/a" {
		t.Fatalf("at 15 min: %+v", acts)
	}
	g.h.Now = t0.Add(time.Hour)
	if acts := actions(t, g.tick()); len(acts) != 0 {
		t.Errorf("at 1 h: %+v", acts)
	}
}

func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.sql")
	os.WriteFile(path, []byte(greenhouse), 0o644)
	p := New(Options{})
	if err := p.Reload(dir); err != nil {
		t.Fatal(err)
	}
	h, err := processors.NewHarness(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, lux := range []int{1, 50000, 60000} {
		if _, err := h.Publish(context.Background(), "gh", schemas.Envelope{Topic: "greenhouse/gh/lux"}, fmt.Appendf(nil, `{"lux": %d}`, lux)); err != nil {
			t.Fatal(err)
		}
	}
	m := p.metrics
	for name, got := range map[string]float64{
		"matched": metricValue(t, m.matched.WithLabelValues("shade")),
		"fired":   metricValue(t, m.fired.WithLabelValues("shade")),
		"command": metricValue(t, m.actions.WithLabelValues("shade", "command")),
		"webhook": metricValue(t, m.actions.WithLabelValues("shade", "webhook")),
	} {
		want := map[string]float64{"matched": 3, "fired": 2, "command": 2, "webhook": 2}[name]
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	os.WriteFile(path, []byte("CREATE RULE"), 0o644)
	os.Chtimes(path, time.Now().Add(time.Hour), time.Now().Add(time.Hour))
	p.Reload(dir)
	if got := metricValue(t, m.fileErrors); got != 1 {
		t.Errorf("file errors = %v", got)
	}
	if got := metricValue(t, m.reloads.WithLabelValues("error")); got != 1 {
		t.Errorf("failed reloads = %v", got)
	}
	if n := countSeries(p.Collectors()[0]); n != 2 { // shade, temps
		t.Errorf("matched series = %d", n)
	}
}

func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

func countSeries(c prometheus.Collector) int {
	ch := make(chan prometheus.Metric, 100)
	c.Collect(ch)
	close(ch)
	return len(ch)
}
