package e2e

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"time"
)

// The parts of a benchmark run, in the order they run.
const (
	// PartIngest measures `iotpipe ingest` alone: acknowledged publishes
	// per second, unpaced.
	PartIngest = "ingest"
	// PartIdle measures the memory per idle connection of `iotpipe
	// ingest` (benchmarks/idleconns) at each of IdleConns.
	PartIdle = "idle"
	// PartNoRules searches the capacity of `iotpipe run` without rules.
	PartNoRules = "norules"
	// PartRules searches the capacity of `iotpipe run` with the 10 rules
	// and profiles it at that capacity.
	PartRules = "rules"
	// PartLatency measures latencies with the 10 rules at shares of their
	// capacity (needs PartRules in the same run).
	PartLatency = "latency"
	// PartDetect runs the simulator's wind fleet and scores the PEWMA
	// rule's detections against the injected spikes.
	PartDetect = "detect"
)

// Parts lists every part in its order.
var Parts = []string{PartIngest, PartIdle, PartNoRules, PartRules, PartLatency, PartDetect}

// Config describes a benchmark run. Zero values select the defaults.
type Config struct {
	// Binary is the iotpipe binary to benchmark. Required.
	Binary string
	// OutDir receives REPORT.md, result.json, the plots and the CPU
	// profiles. Default "benchmarks/results".
	OutDir string
	// WorkDir holds the instances' data directories (removed after
	// each part unless KeepData). Default os.TempDir().
	WorkDir  string
	KeepData bool
	// Parts to run (default all, see Parts).
	Parts []string

	// The raw load (benchmarks/mqttload): Conns connections (100) of
	// QoS (1) publishes of Size bytes (200), Window in flight (64).
	Conns, Size, Window int
	QoS                 byte
	// Partitions of the instances' topics (8, iotpipe's default).
	Partitions int

	// Warmup (3s) runs before each step's measurement window of
	// Measure (10s); Drain (3m) bounds the wait after a step until the
	// processors and the sink caught up.
	Warmup, Measure, Drain time.Duration
	// The capacity search starts at StartRate (10,000/s), doubles while
	// steps keep up, then bisects until the bounds are within Tolerance
	// (0.1) of each other, in at most MaxSteps (8) steps, never above
	// MaxRate (1,000,000/s).
	StartRate, MaxRate, Tolerance float64
	MaxSteps                      int
	// A step keeps up when the load was acknowledged at 95% of the
	// offered rate, and the processors' and the sink's backlogs grew by
	// at most MaxGrowth (0.03) of the offered rate and ended below
	// MaxLag (5s) of it.
	MaxGrowth float64
	MaxLag    time.Duration
	// LatencyLoads are the shares of the capacity latency is measured
	// at (0.25, 0.5, 0.75).
	LatencyLoads []float64

	// Probes (8) publish a stamped point each ProbeInterval (100ms)
	// through the rules; the harness looks for their rows every
	// PollInterval (100ms).
	Probes                      int
	ProbeInterval, PollInterval time.Duration

	// The detection run: DetectDevices (100) wind devices at DetectRate
	// (1,000 points/s) for DetectDuration (60s), seed DetectSeed (1),
	// spikes in DetectShare (0.005) of the points.
	DetectDevices  int
	DetectRate     float64
	DetectDuration time.Duration
	DetectSeed     uint64
	DetectShare    float64

	// IdleConns are the connection counts of the idle part (1,000 and
	// 10,000; the harness needs that many file descriptors).
	IdleConns []int

	// Log receives progress lines. Default: none.
	Log io.Writer
}

func (c Config) withDefaults() Config {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	defF := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	if c.OutDir == "" {
		c.OutDir = "benchmarks/results"
	}
	if c.WorkDir == "" {
		c.WorkDir = os.TempDir()
	}
	if len(c.Parts) == 0 {
		c.Parts = Parts
	}
	def(&c.Conns, 100)
	def(&c.Size, 200)
	def(&c.Window, 64)
	def(&c.Partitions, 8)
	defD(&c.Warmup, 3*time.Second)
	defD(&c.Measure, 10*time.Second)
	defD(&c.Drain, 3*time.Minute)
	defF(&c.StartRate, 10000)
	defF(&c.MaxRate, 1e6)
	defF(&c.Tolerance, 0.1)
	def(&c.MaxSteps, 8)
	defF(&c.MaxGrowth, 0.03)
	defD(&c.MaxLag, 5*time.Second)
	if len(c.LatencyLoads) == 0 {
		c.LatencyLoads = []float64{0.25, 0.5, 0.75}
	}
	def(&c.Probes, 8)
	defD(&c.ProbeInterval, 100*time.Millisecond)
	defD(&c.PollInterval, 100*time.Millisecond)
	def(&c.DetectDevices, 100)
	defF(&c.DetectRate, 1000)
	defD(&c.DetectDuration, time.Minute)
	if c.DetectSeed == 0 {
		c.DetectSeed = 1
	}
	defF(&c.DetectShare, 0.005)
	if len(c.IdleConns) == 0 {
		c.IdleConns = []int{1000, 10000}
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.Binary == "" {
		errs = append(errs, errors.New("the iotpipe binary to benchmark is required"))
	}
	for _, p := range c.Parts {
		if !slices.Contains(Parts, p) {
			errs = append(errs, fmt.Errorf("unknown part %q (parts: %v)", p, Parts))
		}
	}
	if slices.Contains(c.Parts, PartLatency) && !slices.Contains(c.Parts, PartRules) {
		errs = append(errs, errors.New("the latency part needs the rules part (it runs at shares of that capacity)"))
	}
	if c.QoS != 1 {
		errs = append(errs, errors.New("the end-to-end benchmark publishes at QoS 1 (acknowledged publishes are what it counts)"))
	}
	if c.StartRate <= 0 || c.MaxRate < c.StartRate || c.Tolerance <= 0 || c.MaxSteps < 1 {
		errs = append(errs, errors.New("the search needs 0 < start rate <= max rate, a positive tolerance and at least one step"))
	}
	if c.MaxGrowth <= 0 || c.MaxGrowth >= 1 || c.MaxLag <= 0 {
		errs = append(errs, errors.New("max growth must be between 0 and 1 and max lag positive"))
	}
	for _, l := range c.LatencyLoads {
		if l <= 0 || l > 1 {
			errs = append(errs, fmt.Errorf("latency load %v must be a share of capacity in (0, 1]", l))
		}
	}
	if c.Warmup < 0 || c.Measure < time.Second || c.Drain < time.Second {
		errs = append(errs, errors.New("measure and drain must be at least 1s, warm-up not negative"))
	}
	for _, n := range c.IdleConns {
		if n < 1 {
			errs = append(errs, fmt.Errorf("idle connection count %d must be positive", n))
		}
	}
	if c.Probes < 1 || c.ProbeInterval <= 0 || c.PollInterval <= 0 {
		errs = append(errs, errors.New("at least one probe, and positive probe and poll intervals"))
	}
	if c.DetectDevices < 1 || c.DetectRate <= 0 || c.DetectDuration <= 0 || c.DetectShare <= 0 || c.DetectShare > 0.015 {
		errs = append(errs, errors.New("detection needs devices, a rate, a duration and a spike share in (0, 0.015] (spikes are 50 points apart)"))
	}
	return errors.Join(errs...)
}

func (c Config) has(part string) bool { return slices.Contains(c.Parts, part) }
