package mqttload

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// Phase names the part of a run a Progress report belongs to.
type Phase string

// The phases of a run, in order.
const (
	PhaseWarmup  Phase = "warmup"
	PhaseMeasure Phase = "measure"
	PhaseDrain   Phase = "drain"
)

// Progress is a cumulative snapshot passed to Config.Progress.
type Progress struct {
	Phase    Phase
	Elapsed  time.Duration // since sending started
	Sent     uint64        // all PUBLISHes written so far, warm-up included
	Acked    uint64        // all PUBACKs received so far
	Received uint64        // messages received by the subscriber
	// Rates over the last interval, in messages per second.
	SentRate, AckedRate, ReceivedRate float64
	Failed                            int // connections that failed so far
}

// Result is the outcome of one run. Counts and rates cover the measurement
// window (after warm-up, before drain); Total* fields cover the whole run.
type Result struct {
	Addr     string        `json:"addr"`
	Conns    int           `json:"conns"`
	QoS      byte          `json:"qos"`
	Size     int           `json:"size"`
	Window   int           `json:"window,omitempty"`
	Rate     float64       `json:"target_rate,omitempty"`
	Warmup   time.Duration `json:"warmup_ns"`
	Duration time.Duration `json:"duration_ns"` // the measured window
	// WindowStart and WindowEnd are the wall-clock bounds of the measured
	// window in Unix nanoseconds, to line up samples taken elsewhere (for
	// example a log's record count).
	WindowStart int64 `json:"window_start_unix_ns"`
	WindowEnd   int64 `json:"window_end_unix_ns"`

	Sent           uint64  `json:"sent"`
	Acked          uint64  `json:"acked"`
	Received       uint64  `json:"received"`
	SentPerSec     float64 `json:"sent_per_sec"`
	AckedPerSec    float64 `json:"acked_per_sec"`
	ReceivedPerSec float64 `json:"received_per_sec"`

	TotalSent     uint64 `json:"total_sent"`
	TotalAcked    uint64 `json:"total_acked"`
	TotalReceived uint64 `json:"total_received"`
	// DeliveredPerSec is TotalReceived over the time from the subscriber's
	// first to its last message: the broker's delivery rate to one
	// subscriber, warm-up and drain included (a broker may buffer QoS 0
	// floods and deliver them after the window).
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	// Unacked counts QoS 1 messages never acknowledged, even after drain.
	Unacked uint64 `json:"unacked"`
	// OutOfOrder counts PUBACKs that did not arrive in publish order
	// (MQTT 3.1.1 section 4.6 requires the order).
	OutOfOrder uint64 `json:"out_of_order"`

	// Latency is publish→PUBACK for QoS 1 messages sent in the window.
	Latency LatencySummary `json:"latency"`

	// Errors counts connections (publishers and subscriber) that failed
	// during the run; ErrorSamples holds up to five distinct messages.
	Errors       int      `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`
	// Interrupted is set when ctx ended the run early.
	Interrupted bool `json:"interrupted,omitempty"`
}

type counts struct{ sent, acked, received uint64 }

// Run connects cfg.Conns publishers (and a subscriber when cfg.Subscribe is
// set), runs the load and returns the measurement. It returns an error when
// the configuration is invalid or any connection cannot be established;
// failures after the start are counted in Result.Errors. Cancelling ctx
// ends the run early with the counts so far (Result.Interrupted).
func Run(ctx context.Context, cfg Config) (Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Result{}, fmt.Errorf("invalid load configuration: %w", err)
	}
	res := Result{Addr: cfg.Addr, Conns: cfg.Conns, QoS: cfg.QoS, Size: cfg.Size, Rate: cfg.Rate, Warmup: cfg.Warmup}
	if cfg.QoS > 0 {
		res.Window = cfg.Window
	}

	var sub *subscriber
	if cfg.Subscribe != "" {
		var err error
		if sub, err = startSubscriber(ctx, &cfg); err != nil {
			return Result{}, err
		}
		defer sub.close()
	}

	clock := newRunClock()
	if cfg.Warmup > 0 {
		// Record no latency until the measurement window opens.
		clock.from.Store(math.MaxInt64)
	}
	pubs, err := connectAll(ctx, &cfg, clock)
	if err != nil {
		return Result{}, err
	}

	snap := func() counts {
		var c counts
		for _, p := range pubs {
			c.sent += p.sent.Load()
			c.acked += p.acked.Load()
		}
		if sub != nil {
			c.received = sub.received.Load()
		}
		return c
	}
	failed := func() int {
		n := 0
		for _, p := range pubs {
			if p.Err() != nil {
				n++
			}
		}
		return n
	}

	// The pacers and latency windows are relative to the clock; restart it
	// now that every connection is up, before any goroutine reads it.
	clock.base = time.Now()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range pubs {
		go p.readLoop()
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.run(start)
		}()
	}
	allDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(allDone)
	}()

	stopProgress := startProgress(&cfg, clock, snap, failed)
	close(start)

	var begin, end counts
	var window time.Duration
	interrupted := func() bool {
		select {
		case <-ctx.Done():
			return true
		default:
			return false
		}
	}
	if cfg.Count > 0 {
		select {
		case <-allDone:
		case <-ctx.Done():
			res.Interrupted = true
			clock.halt()
			for _, p := range pubs {
				_ = p.conn.SetWriteDeadline(time.Now().Add(cfg.Drain))
			}
			<-allDone
		}
		window = time.Duration(clock.now())
		end = snap()
		res.WindowStart, res.WindowEnd = clock.base.UnixNano(), time.Now().UnixNano()
	} else {
		clock.setPhase(PhaseWarmup)
		if cfg.Warmup > 0 && !sleepCtx(ctx, cfg.Warmup, allDone) {
			res.Interrupted = interrupted()
		}
		t0 := clock.now()
		clock.from.Store(t0)
		begin = snap()
		res.WindowStart = time.Now().UnixNano()
		clock.setPhase(PhaseMeasure)
		if !res.Interrupted {
			if !sleepCtx(ctx, cfg.Duration, allDone) {
				res.Interrupted = interrupted()
			}
		}
		t1 := clock.now()
		clock.to.Store(t1)
		end = snap()
		res.WindowEnd = time.Now().UnixNano()
		window = time.Duration(t1 - t0)
		clock.setPhase(PhaseDrain)
		clock.halt()
		// A writer blocked on a broker that stopped reading gives up after
		// the drain period.
		for _, p := range pubs {
			_ = p.conn.SetWriteDeadline(time.Now().Add(cfg.Drain))
		}
		<-allDone
	}
	stopProgress()

	total := snap()
	res.Duration = window
	res.Sent = end.sent - begin.sent
	res.Acked = end.acked - begin.acked
	res.Received = end.received - begin.received
	if secs := window.Seconds(); secs > 0 {
		res.SentPerSec = float64(res.Sent) / secs
		res.AckedPerSec = float64(res.Acked) / secs
		res.ReceivedPerSec = float64(res.Received) / secs
	}
	res.TotalSent, res.TotalAcked, res.TotalReceived = total.sent, total.acked, total.received
	if cfg.QoS > 0 {
		res.Unacked = total.sent - total.acked
	}
	var hist Histogram
	seen := map[string]bool{}
	addErr := func(err error) {
		if err == nil {
			return
		}
		res.Errors++
		if msg := err.Error(); !seen[msg] && len(res.ErrorSamples) < 5 {
			seen[msg] = true
			res.ErrorSamples = append(res.ErrorSamples, msg)
		}
	}
	for _, p := range pubs {
		hist.Merge(&p.hist)
		res.OutOfOrder += p.outOfOrder
		addErr(p.Err())
	}
	if sub != nil {
		sub.drain(total.sent, cfg.Drain)
		sub.close()
		res.TotalReceived = sub.received.Load()
		res.DeliveredPerSec = sub.deliveredPerSec()
		addErr(sub.Err())
	}
	res.Latency = hist.Summary()
	return res, nil
}

// connectAll dials every publisher, a bounded number at a time, and closes
// them all if any fails.
func connectAll(ctx context.Context, cfg *Config, clock *runClock) ([]*publisher, error) {
	pubs := make([]*publisher, cfg.Conns)
	errs := make([]error, cfg.Conns)
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	perConn, extra := uint64(0), uint64(0)
	if cfg.Count > 0 {
		perConn, extra = uint64(cfg.Count)/uint64(cfg.Conns), uint64(cfg.Count)%uint64(cfg.Conns)
	}
	for i := range pubs {
		limit := perConn
		if uint64(i) < extra {
			limit++
		}
		if cfg.Count > 0 && limit == 0 {
			errs[i] = fmt.Errorf("count %d is smaller than conns %d", cfg.Count, cfg.Conns)
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tmpl, err := newPublishTemplate(cfg.topicFor(i), cfg.QoS, cfg.Size, i)
			if err != nil {
				errs[i] = fmt.Errorf("connection %d: %w", i, err)
				return
			}
			conn, r, err := dialMQTT(ctx, cfg, cfg.clientID(i), 8<<10)
			if err != nil {
				errs[i] = fmt.Errorf("connection %d: %w", i, err)
				return
			}
			pubs[i] = newPublisher(i, cfg, clock, conn, r, tmpl, limit)
		}()
	}
	wg.Wait()
	if err := firstErrors(errs); err != nil {
		for _, p := range pubs {
			if p != nil {
				_ = p.conn.Close()
			}
		}
		return nil, err
	}
	return pubs, nil
}

// firstErrors joins the first few non-nil errors and says how many failed.
func firstErrors(errs []error) error {
	var keep []error
	n := 0
	for _, err := range errs {
		if err == nil {
			continue
		}
		n++
		if len(keep) < 3 {
			keep = append(keep, err)
		}
	}
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d connections failed to connect: %w", n, len(errs), errors.Join(keep...))
}

// sleepCtx waits for d and reports true, or false when ctx or done ends
// first.
func sleepCtx(ctx context.Context, d time.Duration, done <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-done:
		return false
	}
}
