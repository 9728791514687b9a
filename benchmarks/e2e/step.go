package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/iotpipe/iotpipe/benchmarks/mqttload"
)

// Step is one run of the raw load generator at one offered rate.
type Step struct {
	Label string `json:"label"`
	// Prefix starts the client ids of the step's connections (and so the
	// things of its telemetry rows): the loss check counts by it.
	Prefix  string          `json:"prefix"`
	Offered float64         `json:"offered"` // 0: unpaced
	Load    mqttload.Result `json:"load"`
	// Start and End bound the measurement window.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Rates over the window: records logged, events processed, rows
	// confirmed by ClickHouse.
	LoggedPerSec    float64 `json:"logged_per_sec"`
	ProcessedPerSec float64 `json:"processed_per_sec"`
	RowsPerSec      float64 `json:"rows_per_sec"`
	// How fast the processors' and the sink's backlogs (records logged
	// but not yet processed, or not yet rows) grew over the window, and
	// where they ended.
	ProcGrowth  float64 `json:"proc_growth_per_sec"`
	SinkGrowth  float64 `json:"sink_growth_per_sec"`
	ProcBacklog float64 `json:"proc_backlog"`
	SinkBacklog float64 `json:"sink_backlog"`
	// Kept says whether the pipeline kept up with the offered rate; Why
	// says why not.
	Kept bool   `json:"kept"`
	Why  string `json:"why,omitempty"`
	// CPU seconds in the window of iotpipe, its ClickHouse child and the
	// harness (load generator and probes).
	CPUMain       float64 `json:"cpu_main"`
	CPUClickHouse float64 `json:"cpu_clickhouse"`
	CPUHarness    float64 `json:"cpu_harness"`
	// Drain is how long after the load the processors and the sink took
	// to catch up (0 for ingest alone).
	Drain time.Duration `json:"drain_ns"`
	// Latencies of the probe points published in the window, by path
	// (row, webhook, republish).
	Probes map[string]Latency `json:"probes,omitempty"`
	// CDF holds, for the latency steps, the probes' latency by path at
	// each of cdfQuantiles.
	CDF map[string][]time.Duration `json:"cdf,omitempty"`
}

// cdfQuantiles are the quantiles the latency CDFs are drawn through.
var cdfQuantiles = func() []float64 {
	var qs []float64
	for q := 0.01; q < 0.995; q += 0.01 {
		qs = append(qs, q)
	}
	return append(qs, 0.995, 0.999, 1)
}()

// cpuPerMillion returns CPU seconds per million acknowledged publishes.
func (s *Step) cpuPerMillion(cpu float64) float64 {
	if s.Load.Acked == 0 {
		return 0
	}
	return cpu / float64(s.Load.Acked) * 1e6
}

// part is the state of one instance's benchmark.
type part struct {
	h     *harness
	name  string
	in    *instance
	smp   *sampler
	pr    *probes
	steps []Step
}

// step runs the load at rate (0: unpaced), evaluates the window and, on
// a run instance, waits until the pipeline caught up.
func (pt *part) step(ctx context.Context, label string, rate float64) (Step, error) {
	cfg := pt.h.cfg
	st := Step{Label: label, Offered: rate, Prefix: fmt.Sprintf("%s%02d", pt.name[:1], len(pt.steps))}
	fmt.Fprintf(cfg.Log, "  %s %s: %s\n", pt.name, label, rateText(rate))
	res, err := mqttload.Run(ctx, mqttload.Config{
		Addr: pt.in.mqttAddr(), Conns: cfg.Conns, QoS: cfg.QoS, Size: cfg.Size, Window: cfg.Window,
		Rate: rate, Warmup: cfg.Warmup, Duration: cfg.Measure,
		ClientPrefix: st.Prefix + "-", Topic: "bench/{conn}/telemetry",
	})
	if err != nil {
		return st, fmt.Errorf("%s %s: load: %w", pt.name, label, err)
	}
	st.Load = res
	st.Start, st.End = time.Unix(0, res.WindowStart), time.Unix(0, res.WindowEnd)
	pt.smp.waitFresh(ctx, time.Now())
	pt.evaluate(&st)
	if pt.in.role == "run" {
		d, err := pt.drain(ctx)
		st.Drain = d
		if err != nil {
			pt.steps = append(pt.steps, st)
			return st, fmt.Errorf("%s %s: %w", pt.name, label, err)
		}
		if pt.pr != nil {
			st.Probes = pt.pr.latencies(st.Start, st.End)
		}
	}
	pt.steps = append(pt.steps, st)
	fmt.Fprintf(cfg.Log, "    acked %s/s, processed %s/s, rows %s/s, backlog growth %s/s (processors) %s/s (sink), drain %s: %s\n",
		human(st.Load.AckedPerSec), human(st.ProcessedPerSec), human(st.RowsPerSec), human(st.ProcGrowth), human(st.SinkGrowth),
		st.Drain.Round(100*time.Millisecond), verdict(st))
	return st, nil
}

func verdict(st Step) string {
	if st.Kept {
		return "kept up"
	}
	return "behind: " + st.Why
}

// evaluate fills a step's rates, backlog growth, verdict and CPU from the
// samples of its window. Backlogs move in steps (batches, commits), so
// growth compares the smallest backlog in the window's last third with
// the smallest in its first.
func (pt *part) evaluate(st *Step) {
	cfg := pt.h.cfg
	a, b := pt.smp.at(st.Start), pt.smp.at(st.End)
	secs := b.At.Sub(a.At).Seconds()
	if secs <= 0 {
		st.Why = "no samples in the window"
		return
	}
	st.LoggedPerSec = (b.Logged - a.Logged) / secs
	st.ProcessedPerSec = (b.Processed - a.Processed) / secs
	st.RowsPerSec = (b.Rows - a.Rows) / secs
	st.CPUMain, st.CPUClickHouse, st.CPUHarness = b.CPUMain-a.CPUMain, b.CPUClickHouse-a.CPUClickHouse, b.CPUHarness-a.CPUHarness
	if pt.in.role != "run" {
		st.Kept = st.Load.Errors == 0
		return
	}
	win := pt.smp.between(st.Start, st.End)
	third := st.End.Sub(st.Start) / 3
	minOf := func(from, to time.Time, f func(sample) float64) float64 {
		m, ok := 0.0, false
		for _, s := range win {
			if !s.At.Before(from) && !s.At.After(to) && (!ok || f(s) < m) {
				m, ok = f(s), true
			}
		}
		return m
	}
	span := (2 * third).Seconds()
	grow := func(f func(sample) float64) (growth, end float64) {
		first := minOf(st.Start, st.Start.Add(third), f)
		end = minOf(st.End.Add(-third), st.End, f)
		return (end - first) / span, end
	}
	st.ProcGrowth, st.ProcBacklog = grow(sample.procBacklog)
	st.SinkGrowth, st.SinkBacklog = grow(sample.sinkBacklog)
	rate := st.Offered
	if rate == 0 {
		rate = st.Load.AckedPerSec
	}
	lag := rate * cfg.MaxLag.Seconds()
	switch {
	case st.Load.Errors > 0 || st.Load.Unacked > 0:
		st.Why = fmt.Sprintf("%d connections failed, %d publishes unacknowledged", st.Load.Errors, st.Load.Unacked)
	case st.Offered > 0 && st.Load.AckedPerSec < 0.95*st.Offered:
		st.Why = fmt.Sprintf("ingest acknowledged %s/s of %s/s offered", human(st.Load.AckedPerSec), human(st.Offered))
	case st.ProcGrowth > cfg.MaxGrowth*rate:
		st.Why = fmt.Sprintf("the processors' backlog grew by %s/s", human(st.ProcGrowth))
	case st.SinkGrowth > cfg.MaxGrowth*rate:
		st.Why = fmt.Sprintf("the sink's backlog grew by %s/s", human(st.SinkGrowth))
	case st.ProcBacklog > lag || st.SinkBacklog > lag:
		st.Why = fmt.Sprintf("backlogs of %.0f (processors) and %.0f (sink) records, over %s of load", st.ProcBacklog, st.SinkBacklog, cfg.MaxLag)
	default:
		st.Kept = true
	}
}

// drain waits until the processors applied and ClickHouse holds as many
// records as were logged when it was called, and returns how long that
// took. With the probes stopped, that is every logged record.
func (pt *part) drain(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(pt.h.cfg.Drain)
	// What was logged until now must be processed and stored; the
	// probes keep publishing meanwhile, so later records do not count.
	target := pt.smp.waitFresh(ctx, start).Logged
	for {
		s := pt.smp.waitFresh(ctx, time.Now())
		// The sink's counter can miss rows (an insert that timed out
		// but was stored, then skipped as a duplicate when retried):
		// the rows are counted in ClickHouse itself.
		rows, err := pt.rows(ctx)
		if s.Processed >= target && err == nil && rows >= target {
			return time.Since(start), nil
		}
		if ctx.Err() != nil {
			return time.Since(start), ctx.Err()
		}
		if time.Now().After(deadline) {
			return time.Since(start), fmt.Errorf("not caught up %s after the load: %.0f records not processed, %.0f not in ClickHouse (%v)",
				pt.h.cfg.Drain, target-s.Processed, target-rows, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// rows counts the telemetry and presence rows in ClickHouse: one per
// record of the events topic.
func (pt *part) rows(ctx context.Context) (float64, error) {
	out, err := pt.in.query(ctx, "SELECT (SELECT count() FROM telemetry) + (SELECT count() FROM presence)")
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(strings.TrimSpace(out), 64)
}

func rateText(r float64) string {
	if r == 0 {
		return "unpaced"
	}
	return human(r) + "/s offered"
}

// human formats a rate or count: 1234 -> "1234", 45600 -> "45.6k".
func human(v float64) string {
	switch {
	case v >= 1e6 || v <= -1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4 || v <= -1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}
