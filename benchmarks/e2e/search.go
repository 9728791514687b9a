package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Capacity is the outcome of one configuration's capacity search.
type Capacity struct {
	Config string `json:"config"`
	// Rate is the highest offered rate the pipeline kept up with (0 when
	// it kept up with none).
	Rate  float64 `json:"rate"`
	Steps []Step  `json:"steps"`
	// At is the run at Rate that the CPU figures and the profile come
	// from.
	At *Step `json:"at,omitempty"`
	// Profile is the CPU profile of At (a file in the output directory).
	Profile string `json:"profile,omitempty"`
	// Loss is the check of every acknowledged publish against the
	// telemetry rows.
	Loss *LossCheck `json:"loss,omitempty"`
	// Samples are the instance's counters over its whole part.
	Samples []sample `json:"-"`
}

// search finds the highest offered rate the pipeline keeps up with.
func (pt *part) search(ctx context.Context) (float64, error) {
	return searchRate(pt.h.cfg, func(r float64) (bool, error) {
		st, err := pt.step(ctx, "search", r)
		return st.Kept, err
	})
}

// searchRate doubles the rate from StartRate while try keeps up (never
// above MaxRate), then bisects between the last kept and the first
// missed rate until they are within Tolerance, in at most MaxSteps
// tries. It returns the highest kept rate (0: none).
func searchRate(cfg *Config, try func(rate float64) (bool, error)) (float64, error) {
	lo, hi := 0.0, 0.0
	r := cfg.StartRate
	for n := 0; n < cfg.MaxSteps; n++ {
		kept, err := try(r)
		if err != nil {
			return lo, err
		}
		if kept {
			lo = r
		} else {
			hi = r
		}
		switch {
		case hi == 0 && r >= cfg.MaxRate:
			return lo, nil
		case hi == 0:
			r = min(2*r, cfg.MaxRate)
		case lo == 0:
			r = hi / 2
		case (hi-lo)/lo <= cfg.Tolerance:
			return lo, nil
		default:
			r = (lo + hi) / 2
		}
	}
	return lo, nil
}

// atCapacity runs a step at the capacity while taking a CPU profile of
// iotpipe over its measurement window.
func (pt *part) atCapacity(ctx context.Context, rate float64, profile string) (Step, string, error) {
	cfg := pt.h.cfg
	secs := int(cfg.Measure.Seconds())
	errc := make(chan error, 1)
	go func() {
		// Start with the measurement window (after the warm-up).
		select {
		case <-time.After(cfg.Warmup + 500*time.Millisecond):
		case <-ctx.Done():
			errc <- ctx.Err()
			return
		}
		errc <- pt.fetchProfile(ctx, secs, filepath.Join(cfg.OutDir, profile))
	}()
	st, err := pt.step(ctx, "capacity", rate)
	perr := <-errc
	if err != nil {
		return st, "", err
	}
	if perr != nil {
		fmt.Fprintf(cfg.Log, "    no CPU profile: %v\n", perr)
		return st, "", nil
	}
	return st, profile, nil
}

func (pt *part) fetchProfile(ctx context.Context, secs int, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", pt.in.url(fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs)), nil)
	if err != nil {
		return err
	}
	// The instance's transport: it carries the API token /debug/pprof needs.
	resp, err := (&http.Client{Timeout: time.Duration(secs+60) * time.Second, Transport: pt.in.hc.Transport}).Do(req)
	if err != nil {
		return fmt.Errorf("CPU profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("CPU profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
