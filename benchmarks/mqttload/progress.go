package mqttload

import (
	"sync"
	"time"
)

// startProgress calls cfg.Progress every cfg.ProgressInterval until the
// returned stop function is called.
func startProgress(cfg *Config, clock *runClock, snap func() counts, failed func() int) (stop func()) {
	if cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(cfg.ProgressInterval)
		defer t.Stop()
		prev, prevAt := snap(), clock.now()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			c, at := snap(), clock.now()
			secs := time.Duration(at - prevAt).Seconds()
			cfg.Progress(Progress{
				Phase:        clock.currentPhase(),
				Elapsed:      time.Duration(at),
				Sent:         c.sent,
				Acked:        c.acked,
				Received:     c.received,
				SentRate:     float64(c.sent-prev.sent) / secs,
				AckedRate:    float64(c.acked-prev.acked) / secs,
				ReceivedRate: float64(c.received-prev.received) / secs,
				Failed:       failed(),
			})
			prev, prevAt = c, at
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}
