package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// writeReport writes REPORT.md, result.json and the plots into OutDir.
func (h *harness) writeReport() error {
	dir := h.cfg.OutDir
	var plots []string
	for _, c := range []*Capacity{h.res.NoRules, h.res.Rules} {
		if c == nil || len(c.Samples) < 2 {
			continue
		}
		name := "throughput-" + c.Config + ".png"
		if err := plotThroughput(filepath.Join(dir, name), c); err != nil {
			h.res.Notes = append(h.res.Notes, fmt.Sprintf("plot %s: %v", name, err))
		} else {
			plots = append(plots, name)
		}
	}
	if len(h.res.Latency) > 0 {
		if err := plotLatencyCDF(filepath.Join(dir, "latency-cdf.png"), h.res.Latency); err != nil {
			h.res.Notes = append(h.res.Notes, fmt.Sprintf("plot latency-cdf.png: %v", err))
		} else {
			plots = append(plots, "latency-cdf.png")
		}
	}
	b, err := json.MarshalIndent(h.res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "result.json"), b, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "REPORT.md"), []byte(formatReport(h.res, plots)), 0o644)
}

// ms formats a duration in milliseconds (seconds above 10 s).
func ms(d time.Duration) string {
	switch {
	case d == 0:
		return "–"
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	}
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func formatReport(r *Result, plots []string) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	m := r.Machine
	p("# iotpipe end-to-end benchmark\n\n")
	p("Written by `iotpipe bench e2e` on %s UTC; the run took %s. Binary: `%s` (%s).\n\n",
		m.At.Format("2006-01-02 15:04"), r.Took.Round(time.Second), r.Binary, r.Version)
	p("Machine: %s, %d cores, %.1f GB, Linux %s, %s. Load average before the run %s, after %s.\n",
		m.CPU, m.Cores, m.MemoryGB, m.Kernel, m.Go, loads(m.Load), loads(r.LoadAfter))
	p("The load generator, the probes, iotpipe and its ClickHouse share these cores: on a dedicated\n")
	p("machine (or with the generator elsewhere) every rate would be higher.\n\n")

	if len(r.Failures) > 0 {
		p("**FAILED:**\n\n")
		for _, f := range r.Failures {
			p("- %s\n", f)
		}
		p("\n")
	}
	formatSummary(&b, r)
	for _, c := range []*Capacity{r.NoRules, r.Rules} {
		if c != nil {
			formatCapacity(&b, c)
		}
	}
	if len(r.Latency) > 0 {
		formatLatency(&b, r)
	}
	formatCPU(&b, r)
	if len(r.Idle) > 0 {
		formatIdle(&b, r.Idle)
	}
	if d := r.Detection; d != nil {
		formatDetection(&b, d)
	}
	formatLoss(&b, r)
	if len(plots) > 0 {
		p("## Plots\n\n")
		for _, pl := range plots {
			p("![%s](%s)\n\n", strings.TrimSuffix(pl, ".png"), pl)
		}
	}
	if len(r.Notes) > 0 {
		p("## Notes\n\n")
		for _, n := range r.Notes {
			p("- %s\n", n)
		}
		p("\n")
	}
	formatMethod(&b, r)
	return b.String()
}

func loads(l []float64) string {
	if len(l) != 3 {
		return "unknown"
	}
	return fmt.Sprintf("%.2f / %.2f / %.2f", l[0], l[1], l[2])
}

func formatSummary(b *strings.Builder, r *Result) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("## Summary\n\n| measured in this run | value | goal (issue 23) |\n|---|---:|---|\n")
	var rules, norules, ingest float64
	if r.Rules != nil {
		rules = r.Rules.Rate
		p("| capacity end to end, 10 rules (events/s) | %s | ≥ 100k |\n", human(rules))
	}
	if r.NoRules != nil {
		norules = r.NoRules.Rate
		p("| capacity end to end, no rules (events/s) | %s | |\n", human(norules))
	}
	if r.Ingest != nil {
		ingest = r.Ingest.Load.AckedPerSec
		p("| `iotpipe ingest` alone (acked/s, unpaced) | %s | |\n", human(ingest))
	}
	if rules > 0 && norules > 0 {
		p("| 10 rules / no rules | %s | ≥ 0.75 |\n", ratio(rules, norules))
	}
	if norules > 0 && ingest > 0 {
		p("| no rules / ingest alone | %s | ≥ 0.4 |\n", ratio(norules, ingest))
	}
	if r.Rules != nil && r.Rules.At != nil && r.NoRules != nil && r.NoRules.At != nil {
		// CPU per event holds up better than rates on a shared machine.
		cpu := func(st *Step) float64 { return st.cpuPerMillion(st.CPUMain + st.CPUClickHouse) }
		p("| CPU s per 1M events, iotpipe + ClickHouse, at capacity: 10 rules, no rules (ratio) | %.0f, %.0f (%s) | |\n",
			cpu(r.Rules.At), cpu(r.NoRules.At), ratio(cpu(r.Rules.At), cpu(r.NoRules.At)))
	}
	for _, st := range r.Latency {
		if st.Label == "latency 50%" {
			p("| p99 publish→PUBACK at 50%% of capacity, 10 rules | %s | ≤ 50 ms |\n", ms(st.Load.Latency.P99))
			p("| p99 publish→ClickHouse row at 50%% of capacity | %s | ≤ 2 s |\n", ms(st.Probes[pathRow].P99))
		}
	}
	if d := r.Detection; d != nil {
		p("| wind spikes found by PEWMA | %d of %d | all |\n", d.Found, d.Injected)
		p("| false positives per normal point | %.3f%% (%d of %d) | ≤ 1%% |\n", 100*d.FPRate(), d.FalsePositives, d.Scored-d.Injected)
		if len(d.Replays) > 0 {
			same := "yes"
			if d.Differ > 0 {
				same = fmt.Sprintf("NO: %d points differ", d.Differ)
			}
			p("| pipeline's detections = rulesql/pewma replay | %s | yes |\n", same)
		}
	}
	for _, i := range r.Idle {
		p("| RSS per idle connection, %d connections on ingest | %.1f KB (%.0f connects/s) | ≤ 8 KB |\n", i.Conns, i.RSSPerConn/1024, i.ConnectRate)
	}
	lost, dup, checked := uint64(0), uint64(0), false
	for _, c := range []*Capacity{r.NoRules, r.Rules} {
		if c != nil && c.Loss != nil {
			lost, dup, checked = lost+c.Loss.Lost, dup+c.Loss.Duplicates, true
		}
	}
	if checked {
		p("| acknowledged events lost / stored twice | %d / %d | 0 / 0 |\n", lost, dup)
	}
	p("\n")
}

func formatCapacity(b *strings.Builder, c *Capacity) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	title := map[string]string{"rules": "with the 10 rules", "norules": "without rules"}[c.Config]
	p("## Capacity %s: %s events/s\n\n", title, human(c.Rate))
	p("| step | offered/s | acked/s | logged/s | processed/s | rows/s | backlog growth/s (processors, sink) | backlog at the end | drain | p99 PUBACK | p99 row | verdict |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, st := range c.Steps {
		v := "kept up"
		if !st.Kept {
			v = "behind: " + st.Why
		}
		p("| %s | %s | %s | %s | %s | %s | %s, %s | %.0f, %.0f | %s | %s | %s | %s |\n",
			st.Label, human(st.Offered), human(st.Load.AckedPerSec), human(st.LoggedPerSec), human(st.ProcessedPerSec),
			human(st.RowsPerSec), human(st.ProcGrowth), human(st.SinkGrowth), st.ProcBacklog, st.SinkBacklog,
			ms(st.Drain), ms(st.Load.Latency.P99), ms(st.Probes[pathRow].P99), v)
	}
	if c.Profile != "" {
		p("\nCPU profile of iotpipe over the capacity step's window: [%s](%s) (`go tool pprof -top BINARY %s`).\n", c.Profile, c.Profile, c.Profile)
	}
	p("\n")
}

func formatLatency(b *strings.Builder, r *Result) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("## Latency with the 10 rules\n\n")
	p("p50 / p99 (max). PUBACK: every publish of the window; the others: the probes' points published in it.\n\n")
	p("| load | offered/s | acked/s | publish→PUBACK | publish→ClickHouse row | publish→webhook | publish→republish |\n")
	p("|---|---:|---:|---|---|---|---|\n")
	pair := func(l Latency) string {
		if l.Count == 0 {
			return "–"
		}
		return fmt.Sprintf("%s / %s (%s, n=%d)", ms(l.P50), ms(l.P99), ms(l.Max), l.Count)
	}
	for _, st := range r.Latency {
		pl := st.Load.Latency
		p("| %s | %s | %s | %s / %s (%s) | %s | %s | %s |\n", strings.TrimPrefix(st.Label, "latency "), human(st.Offered),
			human(st.Load.AckedPerSec), ms(pl.P50), ms(pl.P99), ms(pl.Max),
			pair(st.Probes[pathRow]), pair(st.Probes[pathWebhook]), pair(st.Probes[pathRepublish]))
	}
	p("\nRow latencies are read by polling ClickHouse every %s on average: each is an upper bound, at most that much high.\n\n", ms(r.PollPeriod))
}

func formatCPU(b *strings.Builder, r *Result) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	type row struct {
		name string
		st   *Step
	}
	var rows []row
	if r.Ingest != nil {
		rows = append(rows, row{"`iotpipe ingest` alone, unpaced", r.Ingest})
	}
	if r.NoRules != nil && r.NoRules.At != nil {
		rows = append(rows, row{"`iotpipe run`, no rules, at capacity", r.NoRules.At})
	}
	if r.Rules != nil && r.Rules.At != nil {
		rows = append(rows, row{"`iotpipe run`, 10 rules, at capacity", r.Rules.At})
	}
	if len(rows) == 0 {
		return
	}
	p("## CPU seconds per million events\n\nFrom /proc over each step's measurement window, per acknowledged publish.\n\n")
	p("| run | events/s | iotpipe | ClickHouse (chDB child) | load generator and probes | iotpipe + ClickHouse | cores these three kept busy |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, rw := range rows {
		st := rw.st
		busy := 0.0
		if secs := st.End.Sub(st.Start).Seconds(); secs > 0 {
			busy = (st.CPUMain + st.CPUClickHouse + st.CPUHarness) / secs
		}
		p("| %s | %s | %.1f | %.1f | %.1f | %.1f | %.2f of %d |\n", rw.name, human(st.Load.AckedPerSec), st.cpuPerMillion(st.CPUMain),
			st.cpuPerMillion(st.CPUClickHouse), st.cpuPerMillion(st.CPUHarness), st.cpuPerMillion(st.CPUMain+st.CPUClickHouse),
			busy, r.Machine.Cores)
	}
	p("\nWhen the three keep fewer than all the cores busy at capacity, something else on the machine took the rest: the rates are then the machine's, not iotpipe's.\n\n")
}

func formatDetection(b *strings.Builder, d *Detection) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("## PEWMA detection of injected spikes\n\n")
	p("`iotpipe simulate`'s wind profile: %d devices, %s points/s for %s (seed %d), spikes of 6–10 noise standard deviations in wind_speed, at least 50 points apart; the rule `wind_spikes` (PEWMA with alpha0 %g, beta %g, T %d, threshold %g; PEWMA's defaults but for beta 0.5, replayed below). Ground truth: detect-truth.jsonl.\n\n",
		d.Devices, human(d.Rate), d.Duration, d.Seed, ruleParams.Alpha0, ruleParams.Beta, ruleParams.T, ruleParams.Threshold)
	p("| points scored | spikes injected | found | missed | false positives | per normal point |\n|---:|---:|---:|---:|---:|---:|\n")
	p("| %d | %d | %d | %d | %d | %.3f%% |\n\n", d.Scored, d.Injected, d.Found, d.Injected-d.Found, d.FalsePositives, 100*d.FPRate())
	if len(d.Missed) > 0 {
		p("Missed (first %d): %s.\n\n", len(d.Missed), strings.Join(d.Missed, ", "))
	}
	if len(d.Replays) > 0 {
		p("The same acknowledged points replayed through `rulesql/pewma` in the harness, per device in order. ")
		if d.Differ == 0 {
			p("With the rule's parameters the replay flags exactly the points the pipeline flagged.\n\n")
		} else {
			p("**With the rule's parameters the replay and the pipeline disagree on %d points.**\n\n", d.Differ)
		}
		p("| alpha0 | beta | T | threshold | found | false positives | per normal point |\n|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range d.Replays {
			rate := 0.0
			if n := d.Scored - d.Injected; n > 0 {
				rate = float64(r.FalsePositives) / float64(n)
			}
			p("| %g | %g | %d | %g | %d of %d | %d | %.3f%% |\n", r.Params.Alpha0, r.Params.Beta, r.Params.T, r.Params.Threshold,
				r.Found, d.Injected, r.FalsePositives, 100*rate)
		}
		p("\n")
	}
}

func formatLoss(b *strings.Builder, r *Result) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	var cs []*Capacity
	for _, c := range []*Capacity{r.NoRules, r.Rules} {
		if c != nil && c.Loss != nil {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return
	}
	p("## Every acknowledged event, once\n\nPer step (client id prefix) and for the probes, after the pipeline caught up: distinct (thing, seq) among the telemetry rows against what the publishers had acknowledged.\n\n")
	p("| run | publishers | sent | acknowledged | rows | distinct | lost | twice |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range cs {
		for _, g := range c.Loss.Groups {
			lost := uint64(0)
			if g.Unique < g.Acked {
				lost = g.Acked - g.Unique
			}
			p("| %s | %s | %d | %d | %d | %d | %d | %d |\n", c.Config, g.Prefix, g.Sent, g.Acked, g.Rows, g.Unique, lost, g.Rows-g.Unique)
		}
	}
	p("\n")
}

func formatMethod(b *strings.Builder, r *Result) {
	c := r.Config
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("## Method\n\n")
	p("- Load: `benchmarks/mqttload` (raw MQTT 3.1.1), %d connections, QoS %d, %d-byte JSON payloads, %d in flight per connection, open loop at the offered rate; each step has a %s warm-up and a %s measurement window. Each configuration runs in a fresh `iotpipe run --dev` (embedded log with %d partitions, embedded ClickHouse, `--pprof`) in a temporary data directory; `ingest alone` is `iotpipe ingest --dev`.\n",
		c.Conns, c.QoS, c.Size, c.Window, c.Warmup, c.Measure, c.Partitions)
	p("- Kept up: acknowledged at ≥ 95%% of the offered rate, and the backlogs (records logged minus events the processors applied; records logged minus rows ClickHouse confirmed, from `/metrics` every 250 ms) grew by at most %.0f%% of the offered rate over the window (smallest backlog in its last third against its first) and ended below %s of load. After each step the harness waits until both backlogs are 0 (the drain column).\n",
		100*c.MaxGrowth, c.MaxLag)
	p("- Capacity: from %s/s, doubled while kept up, then bisected until the bounds are within %.0f%%; the highest kept rate. The capacity step repeats it with a CPU profile.\n", human(c.StartRate), 100*c.Tolerance)
	p("- Latency probes: %d devices publish a point every %s to `bench/probe-N/telemetry` with its publish time, through the same partitions and rules as the load; even points fire `alert_hot` (webhook to the harness), odd ones `alert_cold` (republish the harness subscribes to). The raw load is not stamped.\n", c.Probes, c.ProbeInterval)
	p("- The 10 rules (`benchmarks/e2e/rules/`): 2 filters with actions (webhook, republish), 2 PEWMA detectors, a tumbling window, a `FOR` timer, 4 rarely matching filters and transforms, all on `+/+/telemetry`.\n")
	p("- Ratios are between figures of this run only; rerun on a quiet machine before quoting them.\n")
}

func formatIdle(b *strings.Builder, idle []Idle) {
	p := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	p("## Idle connections\n\n`benchmarks/idleconns` against a fresh `iotpipe ingest --dev` per count: clients connect, publish one QoS 1 message, wait for its PUBACK and stay connected; the process's resident set (/proc) and Go heap (/metrics) before and after.\n\n")
	p("| connections | RSS before | RSS after | RSS per connection | heap per connection | goroutines per connection | connects/s |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, i := range idle {
		p("| %d | %.1f MB | %.1f MB | %.1f KB | %.1f KB | %.2f | %.0f |\n", i.Conns, float64(i.RSSBefore)/(1<<20), float64(i.RSSAfter)/(1<<20),
			i.RSSPerConn/1024, i.HeapPerConn/1024, i.GoroutinesPerConn, i.ConnectRate)
	}
	p("\n")
}
