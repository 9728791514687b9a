package e2e

import (
	"context"
	"os"
	"sort"
	"sync"
	"time"
)

// sample is one reading of an instance's counters and CPU times.
type sample struct {
	At time.Time `json:"at"`
	// Logged counts the records ingest wrote to the events topic;
	// Processed the events the processors applied; Rows the telemetry
	// and presence rows ClickHouse confirmed (one per event).
	Logged    float64 `json:"logged"`
	Processed float64 `json:"processed"`
	Rows      float64 `json:"rows"`
	Webhooks  float64 `json:"webhooks"`
	// CPU seconds so far of iotpipe, its ClickHouse child and this
	// process (the load generator and the probes).
	CPUMain       float64 `json:"cpu_main"`
	CPUClickHouse float64 `json:"cpu_clickhouse"`
	CPUHarness    float64 `json:"cpu_harness"`
}

func (s sample) procBacklog() float64 { return s.Logged - s.Processed }
func (s sample) sinkBacklog() float64 { return s.Logged - s.Rows }

// sampler reads an instance's /metrics and CPU times every interval.
type sampler struct {
	in      *instance
	mu      sync.Mutex
	samples []sample
	cancel  context.CancelFunc
	done    chan struct{}
}

func startSampler(ctx context.Context, in *instance, every time.Duration) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &sampler{in: in, cancel: cancel, done: make(chan struct{})}
	mainPid, chPid := in.pids()
	self := os.Getpid()
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if in.role == "run" && chPid == 0 {
				_, chPid = in.pids()
			}
			m, err := in.scrape(ctx)
			if err == nil {
				sm := sample{
					At:            time.Now(),
					Logged:        m.value("iotpipe_ingest_logged_total"),
					Processed:     m.value("iotpipe_processor_events_total"),
					Rows:          m.value("iotpipe_clickhouse_rows_inserted_total", "table", "telemetry") + m.value("iotpipe_clickhouse_rows_inserted_total", "table", "presence"),
					Webhooks:      m.value("iotpipe_webhook_delivered_total"),
					CPUMain:       cpuOf(mainPid),
					CPUClickHouse: cpuOf(chPid),
					CPUHarness:    cpuOf(self),
				}
				s.mu.Lock()
				s.samples = append(s.samples, sm)
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *sampler) stop() {
	s.cancel()
	<-s.done
}

// all returns every sample so far.
func (s *sampler) all() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sample(nil), s.samples...)
}

// between returns the samples taken in [a, b].
func (s *sampler) between(a, b time.Time) []sample {
	var out []sample
	for _, sm := range s.all() {
		if !sm.At.Before(a) && !sm.At.After(b) {
			out = append(out, sm)
		}
	}
	return out
}

// at returns the sample taken nearest to t.
func (s *sampler) at(t time.Time) sample {
	all := s.all()
	if len(all) == 0 {
		return sample{}
	}
	i := sort.Search(len(all), func(i int) bool { return !all[i].At.Before(t) })
	switch {
	case i == len(all):
		return all[i-1]
	case i > 0 && t.Sub(all[i-1].At) < all[i].At.Sub(t):
		return all[i-1]
	}
	return all[i]
}

// latest returns the newest sample.
func (s *sampler) latest() sample {
	all := s.all()
	if len(all) == 0 {
		return sample{}
	}
	return all[len(all)-1]
}

// waitFresh waits until a sample newer than t exists.
func (s *sampler) waitFresh(ctx context.Context, t time.Time) sample {
	for {
		if l := s.latest(); l.At.After(t) {
			return l
		}
		select {
		case <-ctx.Done():
			return s.latest()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
