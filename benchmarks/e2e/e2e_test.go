package e2e

import (
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/iotpipe/iotpipe/benchmarks/mqttload"
)

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		line string
		want procStat
		err  bool
	}{
		{"25539 (iotpipe) S 1 25539 25522 0 -1 4194560 95634 0 0 0 5417 1630 0 0 20 0 14 0 123 0", procStat{1, 5417, 1630}, false},
		{"7 (a b) (c)) R 3 7 7 0 -1 0 0 0 0 0 12 34 0 0", procStat{3, 12, 34}, false},
		{"7 (x) R 3 7", procStat{}, true},
		{"no name here", procStat{}, true},
		{"7 (x) R p 7 7 0 -1 0 0 0 0 0 12 34 0 0", procStat{}, true},
	} {
		got, err := parseStat([]byte(tc.line))
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseStat(%q) = %+v, %v", tc.line, got, err)
		}
	}
	if got := (procStat{utime: 150, stime: 50}).cpu(); got != 2 {
		t.Errorf("cpu %v", got)
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("25539 (iotpipe) S 1 25539 25522 0 -1 4194560 95634 0 0 0 5417 1630 0 0 20 0 14 0 123 0"))
	f.Add([]byte("7 (a b) (c)) R 3 7 7 0 -1 0 0 0 0 0 12 34 0 0"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseStat(b)
		if err == nil && st.cpu() < 0 {
			t.Fatalf("negative CPU from %q", b)
		}
	})
}

func TestParseCounts(t *testing.T) {
	got, err := parseCounts("r00\t10\t10\nprobe\t5\t4\n")
	if err != nil || got["r00"] != [2]uint64{10, 10} || got["probe"] != [2]uint64{5, 4} {
		t.Fatalf("%v %v", got, err)
	}
	for _, bad := range []string{"r00\t10", "r00\tx\t1", "r00\t3\t4"} {
		if _, err := parseCounts(bad); err == nil {
			t.Errorf("parseCounts(%q) accepted", bad)
		}
	}
	if got, err := parseCounts("\n"); err != nil || len(got) != 0 {
		t.Errorf("empty: %v %v", got, err)
	}
}

func FuzzParseCounts(f *testing.F) {
	f.Add("r00\t10\t10\nprobe\t5\t4\n")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseCounts(s)
		if err != nil {
			return
		}
		for _, c := range got {
			if c[1] > c[0] {
				t.Fatalf("more distinct than rows: %q", s)
			}
		}
	})
}

func TestSearchRate(t *testing.T) {
	cfg := Config{}.withDefaults()
	for _, tc := range []struct {
		name      string
		capacity  float64
		maxSteps  int
		want      func(got float64) bool
		wantTries int
	}{
		{"between doublings", 33000, 8, func(g float64) bool { return g <= 33000 && g >= 33000/(1+cfg.Tolerance) }, 6},
		{"below the start", 3000, 8, func(g float64) bool { return g <= 3000 && g >= 3000/(1+cfg.Tolerance) }, 7},
		{"nothing kept", 10, 3, func(g float64) bool { return g == 0 }, 3},
		{"at the maximum", 2e6, 20, func(g float64) bool { return g == cfg.MaxRate }, 8},
		{"steps run out", 33000, 3, func(g float64) bool { return g == 20000 }, 3},
	} {
		c := cfg
		c.MaxSteps = tc.maxSteps
		var tries []float64
		got, err := searchRate(&c, func(r float64) (bool, error) {
			tries = append(tries, r)
			return r <= tc.capacity, nil
		})
		if err != nil || !tc.want(got) || len(tries) != tc.wantTries {
			t.Errorf("%s: capacity %v found %v after %v", tc.name, tc.capacity, got, tries)
		}
		for _, r := range tries {
			if r > cfg.MaxRate {
				t.Errorf("%s: tried %v above the maximum", tc.name, r)
			}
		}
	}
	boom := errors.New("boom")
	if _, err := searchRate(&cfg, func(float64) (bool, error) { return false, boom }); !errors.Is(err, boom) {
		t.Errorf("error %v", err)
	}
}

// series builds samples every 250 ms over d: the load logs at rate, the
// processors and the sink apply their own rates in batches every
// batchEvery (so the backlogs saw-tooth).
func series(start time.Time, d time.Duration, rate, procRate, sinkRate float64, batchEvery time.Duration) []sample {
	var out []sample
	for t := time.Duration(0); t <= d; t += 250 * time.Millisecond {
		batched := float64(t/batchEvery) * batchEvery.Seconds()
		out = append(out, sample{
			At:        start.Add(t),
			Logged:    rate * t.Seconds(),
			Processed: procRate * batched,
			Rows:      sinkRate * batched,
		})
	}
	return out
}

func TestEvaluate(t *testing.T) {
	start := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name               string
		offered, acked     float64
		procRate, sinkRate float64
		batch              time.Duration
		kept               bool
		why                string
	}{
		{"keeps up in batches", 20000, 20000, 20000, 20000, time.Second, true, ""},
		{"processors behind", 20000, 20000, 17000, 20000, 500 * time.Millisecond, false, "processors' backlog grew"},
		{"sink behind", 20000, 20000, 20000, 18000, 500 * time.Millisecond, false, "sink's backlog grew"},
		{"ingest behind", 20000, 15000, 15000, 15000, 250 * time.Millisecond, false, "ingest acknowledged"},
	} {
		cfg := Config{}.withDefaults()
		h := &harness{cfg: &cfg}
		smp := &sampler{}
		logRate := tc.acked
		smp.samples = series(start, 12*time.Second, logRate, tc.procRate, tc.sinkRate, tc.batch)
		pt := &part{h: h, name: "rules", in: &instance{role: "run"}, smp: smp}
		st := Step{Offered: tc.offered, Start: start.Add(time.Second), End: start.Add(11 * time.Second),
			Load: mqttload.Result{AckedPerSec: tc.acked, Acked: uint64(tc.acked * 10)}}
		pt.evaluate(&st)
		if st.Kept != tc.kept || !strings.Contains(st.Why, tc.why) {
			t.Errorf("%s: kept %v (%s); growth %.0f/s, %.0f/s", tc.name, st.Kept, st.Why, st.ProcGrowth, st.SinkGrowth)
		}
		if math.Abs(st.LoggedPerSec-logRate) > 1 {
			t.Errorf("%s: logged %.0f/s, want %.0f", tc.name, st.LoggedPerSec, logRate)
		}
	}
	// A backlog that is steady but over MaxLag of load is not bounded.
	cfg := Config{}.withDefaults()
	smp := &sampler{}
	for _, s := range series(start, 12*time.Second, 1000, 1000, 1000, 250*time.Millisecond) {
		s.Logged += 10000 // 10 s of load behind all along
		smp.samples = append(smp.samples, s)
	}
	pt := &part{h: &harness{cfg: &cfg}, name: "rules", in: &instance{role: "run"}, smp: smp}
	st := Step{Offered: 1000, Start: start.Add(time.Second), End: start.Add(11 * time.Second), Load: mqttload.Result{AckedPerSec: 1000}}
	pt.evaluate(&st)
	if st.Kept || !strings.Contains(st.Why, "backlogs of") {
		t.Errorf("steady backlog of 10 s: kept %v (%s)", st.Kept, st.Why)
	}
}

func TestMetricsValue(t *testing.T) {
	text := `# TYPE iotpipe_clickhouse_rows_inserted_total counter
iotpipe_clickhouse_rows_inserted_total{table="telemetry"} 120
iotpipe_clickhouse_rows_inserted_total{table="presence"} 4
# TYPE iotpipe_processor_lag gauge
iotpipe_processor_lag{partition="0"} 3
iotpipe_processor_lag{partition="1"} 5
`
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics(fams)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"iotpipe_clickhouse_rows_inserted_total", nil, 124},
		{"iotpipe_clickhouse_rows_inserted_total", []string{"table", "telemetry"}, 120},
		{"iotpipe_clickhouse_rows_inserted_total", []string{"table", "nosuch"}, 0},
		{"iotpipe_processor_lag", nil, 8},
		{"absent", nil, 0},
	} {
		if got := m.value(tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s %v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Binary: "iotpipe", QoS: 1}
	if err := ok.withDefaults().validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.Binary = "" }, "binary"},
		{func(c *Config) { c.Parts = []string{"capacity"} }, `unknown part "capacity"`},
		{func(c *Config) { c.Parts = []string{PartLatency} }, "needs the rules part"},
		{func(c *Config) { c.QoS = 0 }, "QoS 1"},
		{func(c *Config) { c.MaxRate = 5 }, "start rate <= max rate"},
		{func(c *Config) { c.LatencyLoads = []float64{1.5} }, "share of capacity"},
		{func(c *Config) { c.Measure = time.Millisecond }, "at least 1s"},
		{func(c *Config) { c.DetectShare = 0.5 }, "spike share"},
	} {
		c := ok.withDefaults()
		tc.change(&c)
		if err := c.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v", tc.want, err)
		}
	}
}

// The report's summary states the ratios the goals are written in.
func TestReportSummary(t *testing.T) {
	lat := Step{Label: "latency 50%", Load: mqttload.Result{Latency: mqttload.LatencySummary{P99: 40 * time.Millisecond}},
		Probes: map[string]Latency{pathRow: {Count: 10, P99: 1500 * time.Millisecond}}}
	r := &Result{
		Machine:   Machine{Cores: 2, Load: []float64{1, 2, 3}},
		Ingest:    &Step{Load: mqttload.Result{AckedPerSec: 200000}},
		NoRules:   &Capacity{Config: "norules", Rate: 80000, Loss: &LossCheck{}},
		Rules:     &Capacity{Config: "rules", Rate: 40000, Loss: &LossCheck{Lost: 2, Duplicates: 1}},
		Latency:   []Step{lat},
		Detection: &Detection{Scored: 10100, Injected: 100, Found: 98, FalsePositives: 50},
	}
	out := formatReport(r, nil)
	for _, want := range []string{
		"| 10 rules / no rules | 0.50 | ≥ 0.75 |",
		"| no rules / ingest alone | 0.40 | ≥ 0.4 |",
		"| p99 publish→PUBACK at 50% of capacity, 10 rules | 40.0 ms |",
		"| p99 publish→ClickHouse row at 50% of capacity | 1500 ms |",
		"| wind spikes found by PEWMA | 98 of 100 |",
		"| false positives per normal point | 0.500% (50 of 10000) |",
		"| acknowledged events lost / stored twice | 2 / 1 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// The API token goes to iotpipe's API only: the benchmark's ClickHouse
// queries (another host:port) failed with "'Bearer' HTTP Authorization
// scheme is not supported" when every request carried it.
func TestBearerOnlyToTheAPI(t *testing.T) {
	seen := func() (*httptest.Server, *string) {
		var got string
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Get("Authorization") })), &got
	}
	api, apiGot := seen()
	defer api.Close()
	other, otherGot := seen()
	defer other.Close()
	hc := &http.Client{Transport: bearer{token: "tok", host: strings.TrimPrefix(api.URL, "http://"), base: http.DefaultTransport}}
	for _, u := range []string{api.URL, other.URL} {
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if *apiGot != "Bearer tok" || *otherGot != "" {
		t.Errorf("Authorization: API %q, other server %q", *apiGot, *otherGot)
	}
}
