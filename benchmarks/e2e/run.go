package e2e

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"time"
)

// rulesFS holds the fixed rule set (rules/*.sql, the 10 rules of the
// "rules" configuration) and the detection rule (rules/detect/).
//
//go:embed rules
var rulesFS embed.FS

// webhookPlaceholder is the address in the rules the harness replaces
// with its webhook receiver's.
const webhookPlaceholder = "http://WEBHOOK"

// Result is everything one benchmark run measured.
type Result struct {
	Machine   Machine       `json:"machine"`
	LoadAfter []float64     `json:"load_average_after"`
	Took      time.Duration `json:"took_ns"`
	Binary    string        `json:"binary"`
	Version   string        `json:"version"`
	Config    Config        `json:"config"`

	// Ingest is `iotpipe ingest` alone, unpaced.
	Ingest *Step `json:"ingest,omitempty"`
	// Idle is the memory per idle connection of ingest alone.
	Idle []Idle `json:"idle,omitempty"`
	// NoRules and Rules are `iotpipe run` without rules and with the
	// 10 rules.
	NoRules *Capacity `json:"norules,omitempty"`
	Rules   *Capacity `json:"rules,omitempty"`
	// Latency holds the steps at shares of the rules' capacity.
	Latency []Step `json:"latency,omitempty"`
	// PollPeriod is the mean time between two ClickHouse polls: the
	// resolution of publish→row latencies.
	PollPeriod time.Duration `json:"poll_period_ns"`
	Detection  *Detection    `json:"detection,omitempty"`
	// Failures are the checks that failed (lost or duplicated events, a
	// pipeline that did not catch up).
	Failures []string `json:"failures,omitempty"`
	// Notes are problems that do not fail the run (a missing profile).
	Notes []string `json:"notes,omitempty"`
}

type harness struct {
	cfg   *Config
	rules map[string]string // path under rules/ -> text
	res   *Result
}

// ErrConfig is returned (wrapped) by Run for a configuration it cannot run.
var ErrConfig = errors.New("invalid benchmark configuration")

// ErrFailed is returned (wrapped) by Run when a check failed; the report
// is written all the same.
var ErrFailed = errors.New("the benchmark's checks failed")

// Run runs the benchmark's parts and writes the report into cfg.OutDir.
// It returns the result with an error wrapping ErrFailed when events
// were lost or stored twice, or another error when a part could not run.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	h := &harness{cfg: &cfg, rules: map[string]string{}, res: &Result{Machine: machine(), Binary: cfg.Binary, Config: cfg}}
	h.res.Config.Log = nil
	err := fs.WalkDir(rulesFS, "rules", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := rulesFS.ReadFile(path)
		h.rules[strings.TrimPrefix(path, "rules/")] = string(b)
		return err
	})
	if err != nil {
		return nil, err
	}
	if out, err := exec.Command(cfg.Binary, "version").Output(); err == nil {
		h.res.Version = strings.TrimSpace(string(out))
	}
	start := time.Now()
	runErr := h.run(ctx)
	h.res.Took = time.Since(start)
	h.res.LoadAfter = loadAverage()
	if runErr != nil {
		h.res.Failures = append(h.res.Failures, runErr.Error())
	}
	if err := h.writeReport(); err != nil {
		return h.res, fmt.Errorf("write the report: %w", err)
	}
	if len(h.res.Failures) > 0 {
		return h.res, fmt.Errorf("%w: %s", ErrFailed, strings.Join(h.res.Failures, "; "))
	}
	return h.res, nil
}

func (h *harness) run(ctx context.Context) error {
	cfg := h.cfg
	if cfg.has(PartIngest) {
		fmt.Fprintln(cfg.Log, "iotpipe ingest alone")
		st, err := h.ingestAlone(ctx)
		if err != nil {
			return err
		}
		h.res.Ingest = st
	}
	if cfg.has(PartIdle) {
		fmt.Fprintln(cfg.Log, "iotpipe ingest: memory per idle connection")
		idle, err := h.idle(ctx)
		h.res.Idle = idle
		if err != nil {
			return err
		}
	}
	if cfg.has(PartNoRules) {
		fmt.Fprintln(cfg.Log, "iotpipe run without rules")
		c, err := h.capacity(ctx, "norules", nil)
		h.res.NoRules = c
		if err != nil {
			return err
		}
	}
	if cfg.has(PartRules) {
		fmt.Fprintln(cfg.Log, "iotpipe run with the 10 rules")
		rules := map[string]string{}
		for path, text := range h.rules {
			if !strings.Contains(path, "/") {
				rules[path] = text
			}
		}
		c, err := h.capacity(ctx, "rules", rules)
		h.res.Rules = c
		if err != nil {
			return err
		}
	}
	if cfg.has(PartDetect) {
		fmt.Fprintln(cfg.Log, "PEWMA detection of the wind profile's spikes")
		d, err := h.detect(ctx)
		h.res.Detection = d
		if err != nil {
			return err
		}
	}
	return nil
}

func (h *harness) ingestAlone(ctx context.Context) (*Step, error) {
	in, err := startInstance(ctx, h.cfg, "ingest", "ingest", nil)
	if err != nil {
		return nil, err
	}
	defer h.finish(in)
	smp := startSampler(ctx, in, 250*time.Millisecond)
	defer smp.stop()
	pt := &part{h: h, name: "ingest", in: in, smp: smp}
	st, err := pt.step(ctx, "unpaced", 0)
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// capacity searches one configuration's capacity, runs at it with a CPU
// profile, measures latency at shares of it (the rules configuration),
// and checks every acknowledged publish against the rows.
func (h *harness) capacity(ctx context.Context, name string, rules map[string]string) (*Capacity, error) {
	cfg := h.cfg
	pr, err := startReceiver(cfg)
	if err != nil {
		return nil, err
	}
	defer pr.close()
	for file, text := range rules {
		rules[file] = strings.ReplaceAll(text, webhookPlaceholder, pr.hookURL)
	}
	in, err := startInstance(ctx, cfg, name, "run", rules)
	if err != nil {
		return nil, err
	}
	defer h.finish(in)
	smp := startSampler(ctx, in, 250*time.Millisecond)
	defer smp.stop()
	if err := pr.start(ctx, in); err != nil {
		return nil, err
	}
	pt := &part{h: h, name: name, in: in, smp: smp, pr: pr}
	c := &Capacity{Config: name}
	defer func() {
		c.Steps = pt.steps
		c.Samples = smp.all()
	}()
	rate, err := pt.search(ctx)
	c.Rate = rate
	if err != nil {
		return c, err
	}
	if rate == 0 {
		lowest := cfg.StartRate
		for _, st := range pt.steps {
			lowest = min(lowest, st.Offered)
		}
		h.res.Failures = append(h.res.Failures, fmt.Sprintf("%s: the pipeline kept up with no offered rate (the lowest tried: %s/s)", name, human(lowest)))
	} else {
		st, profile, err := pt.atCapacity(ctx, rate, "cpu-"+name+".pprof")
		if err != nil {
			return c, err
		}
		c.At, c.Profile = &st, profile
		if profile == "" {
			h.res.Notes = append(h.res.Notes, name+": no CPU profile of the capacity run")
		}
		if name == "rules" && cfg.has(PartLatency) {
			for _, share := range cfg.LatencyLoads {
				st, err := pt.step(ctx, fmt.Sprintf("latency %.0f%%", 100*share), share*rate)
				if err != nil {
					return c, err
				}
				st.CDF = map[string][]time.Duration{}
				for _, path := range []string{pathRow, pathWebhook, pathRepublish} {
					st.CDF[path] = pr.cdf(path, st.Start, st.End, cdfQuantiles)
				}
				h.res.Latency = append(h.res.Latency, st)
			}
		}
	}
	h.res.PollPeriod = pr.pollPeriod()
	pr.stop()
	if _, err := pt.drain(ctx); err != nil {
		return c, fmt.Errorf("%s: %w", name, err)
	}
	loss, err := pt.checkLoss(ctx)
	if err != nil {
		return c, err
	}
	c.Loss = loss
	fmt.Fprintf(cfg.Log, "  %s: %d publishes acknowledged, %d telemetry rows: %d lost, %d duplicated\n",
		name, loss.Acked, loss.Rows, loss.Lost, loss.Duplicates)
	if !loss.OK() {
		h.res.Failures = append(h.res.Failures, fmt.Sprintf("%s: %d acknowledged events lost, %d stored twice (between the publishers' acknowledged counts and the telemetry rows)",
			name, loss.Lost, loss.Duplicates))
	}
	return c, nil
}

// finish stops an instance and removes its data unless asked to keep it.
func (h *harness) finish(in *instance) {
	in.stop()
	if h.cfg.KeepData {
		fmt.Fprintf(h.cfg.Log, "  kept %s's data in %s\n", in.name, in.dir)
		return
	}
	os.RemoveAll(in.dir)
}
