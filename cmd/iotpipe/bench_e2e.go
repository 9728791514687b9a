package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/iotpipe/iotpipe/benchmarks/e2e"
)

const benchE2EUsage = `Usage: iotpipe bench e2e [flags]

The whole pipeline measured end to end. Starts this iotpipe binary as
'iotpipe run --dev' (embedded log and ClickHouse, free ports, a temporary
data directory) and as 'iotpipe ingest --dev', drives it with the raw MQTT
load generator (100 connections, QoS 1, 200-byte JSON) and the fleet
simulator, and writes benchmarks/results/REPORT.md with:

  capacity    the highest offered rate at which the processors' and the
              sink's backlogs stay bounded (doubling from --start-rate,
              then bisecting), with the 10 rules of benchmarks/e2e/rules/
              and without rules; 'iotpipe ingest' alone, unpaced; the
              ratios issue 23's goals are stated in
  latency     at 25/50/75% of the 10-rule capacity: publish→PUBACK, and
              for probe points travelling with the load publish→ClickHouse
              row, →webhook (a receiver in the harness), →republish
  idle        RSS per idle connection of 'iotpipe ingest' at 1,000 and
              10,000 connections, and the connect rate (benchmarks/idleconns)
  CPU         seconds per million events of iotpipe, its ClickHouse child
              and the harness, from /proc; a CPU profile at capacity
              (cpu-rules.pprof, cpu-norules.pprof)
  detection   the simulator's wind profile with injected spikes against a
              PEWMA rule: found / injected, false positives
  loss        every acknowledged publish must be exactly one telemetry
              row: the run fails (exit 1) otherwise

plus result.json, throughput-*.png, latency-cdf.png and detect-truth.jsonl.
A full run takes about 10-15 minutes on 2 cores; the flags below shorten
it (e.g. --parts rules --measure 5s --max-steps 4). The embedded
ClickHouse needs chDB (make deps, or IOTPIPE_CHDB_LIB).

Exit status: 0 when every check passed, 1 when events were lost or stored
twice or a part could not run, 2 on bad usage.

Flags:
`

// benchE2EMain runs `iotpipe bench e2e`.
func benchE2EMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("iotpipe bench e2e", flag.ContinueOnError)
	var (
		cfg          e2e.Config
		parts, loads string
		idle         string
		quiet        bool
	)
	self, _ := os.Executable()
	fs.StringVar(&cfg.Binary, "binary", self, "the iotpipe `binary` to benchmark (default: this one)")
	fs.StringVar(&cfg.OutDir, "out", "benchmarks/results", "output `directory` for REPORT.md, result.json, plots and profiles")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "where the instances' data directories go (default: the system's temporary directory)")
	fs.BoolVar(&cfg.KeepData, "keep-data", false, "keep the instances' data directories (their logs too)")
	fs.StringVar(&parts, "parts", strings.Join(e2e.Parts, ","), "the `parts` to run, comma-separated: "+strings.Join(e2e.Parts, ", "))
	fs.IntVar(&cfg.Conns, "conns", 100, "load connections")
	fs.IntVar(&cfg.Size, "size", 200, "payload bytes")
	fs.IntVar(&cfg.Window, "window", 64, "QoS 1 publishes in flight per connection")
	fs.IntVar(&cfg.Partitions, "partitions", 8, "partitions of the instances' topics")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "load before each step's measurement window (default 3s)")
	fs.DurationVar(&cfg.Measure, "measure", 0, "each step's measurement window (default 10s)")
	fs.DurationVar(&cfg.Drain, "drain", 0, "longest wait after a step for the pipeline to catch up (default 3m)")
	fs.Float64Var(&cfg.StartRate, "start-rate", 0, "first offered rate of the capacity search, events/s (default 10000)")
	fs.Float64Var(&cfg.MaxRate, "max-rate", 0, "highest offered rate tried (default 1000000)")
	fs.Float64Var(&cfg.Tolerance, "tolerance", 0, "the search stops when its bounds are this close, relative (default 0.1)")
	fs.IntVar(&cfg.MaxSteps, "max-steps", 0, "most steps of one capacity search (default 8)")
	fs.Float64Var(&cfg.MaxGrowth, "max-growth", 0, "a backlog growing faster than this share of the offered rate is not bounded (default 0.03)")
	fs.DurationVar(&cfg.MaxLag, "max-lag", 0, "a backlog above this much load at the end of a step is not bounded (default 5s)")
	fs.StringVar(&loads, "latency-loads", "0.25,0.5,0.75", "shares of the 10-rule capacity latency is measured at")
	fs.IntVar(&cfg.Probes, "probes", 0, "latency probe devices (default 8)")
	fs.DurationVar(&cfg.ProbeInterval, "probe-interval", 0, "between two points of a probe (default 100ms)")
	fs.IntVar(&cfg.DetectDevices, "detect-devices", 0, "wind devices of the detection run (default 100)")
	fs.Float64Var(&cfg.DetectRate, "detect-rate", 0, "points/s of the detection run (default 1000)")
	fs.DurationVar(&cfg.DetectDuration, "detect-duration", 0, "length of the detection run (default 1m)")
	fs.Uint64Var(&cfg.DetectSeed, "detect-seed", 1, "seed of the detection run")
	fs.StringVar(&idle, "idle-conns", "1000,10000", "connection counts of the idle part")
	fs.BoolVar(&quiet, "quiet", false, "no progress on stderr")
	if code, done := parseFlagsOnly(fs, args, "bench e2e", benchE2EUsage, stdout, stderr); done {
		return code
	}
	cfg.QoS = 1
	cfg.Parts = strings.Split(parts, ",")
	for _, s := range strings.Split(loads, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			fmt.Fprintf(stderr, "iotpipe bench e2e: --latency-loads: %q is not a number\n", s)
			return 2
		}
		cfg.LatencyLoads = append(cfg.LatencyLoads, v)
	}
	for _, s := range strings.Split(idle, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			fmt.Fprintf(stderr, "iotpipe bench e2e: --idle-conns: %q is not a count\n", s)
			return 2
		}
		cfg.IdleConns = append(cfg.IdleConns, n)
	}
	if !quiet {
		cfg.Log = stderr
	}
	res, err := e2e.Run(ctx, cfg)
	if res == nil {
		fmt.Fprintf(stderr, "iotpipe bench e2e: %v\n", err)
		if errors.Is(err, e2e.ErrConfig) {
			return 2
		}
		return 1
	}
	fmt.Fprintf(stdout, "report: %s/REPORT.md\n", cfg.OutDir)
	if err != nil {
		fmt.Fprintf(stderr, "iotpipe bench e2e: %v\n", err)
		return 1
	}
	return 0
}
