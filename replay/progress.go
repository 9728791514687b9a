package replay

import (
	"fmt"
	"io"
	"time"
)

// Progress reports how far a read is: records read of the total the
// plan holds, the rate, and the time left at that rate. Start it only
// when its writer is a terminal (it redraws one line).
type Progress struct {
	w     io.Writer
	what  string
	total int64
	read  *Counter
	start time.Time
	stop  chan struct{}
	done  chan struct{}
}

// StartProgress redraws a progress line on w every interval until Stop.
func StartProgress(w io.Writer, what string, total int64, read *Counter, interval time.Duration) *Progress {
	p := &Progress{w: w, what: what, total: total, read: read, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				fmt.Fprint(p.w, "\r\033[K")
				return
			case <-t.C:
				fmt.Fprint(p.w, "\r\033[K"+p.Line(time.Now()))
			}
		}
	}()
	return p
}

// Stop ends the progress line and erases it.
func (p *Progress) Stop() {
	close(p.stop)
	<-p.done
}

// Line returns the progress line at now: "what: 12,345 / 100,000
// records (12%), 45,678/s, about 2s left".
func (p *Progress) Line(now time.Time) string {
	n := p.read.Load()
	el := now.Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(n) / el
	}
	s := fmt.Sprintf("%s: %d", p.what, n)
	if p.total > 0 {
		s += fmt.Sprintf(" / %d records (%d%%)", p.total, min(100, n*100/p.total))
	} else {
		s += " records"
	}
	s += fmt.Sprintf(", %.0f/s", rate)
	if p.total > n && rate > 0 {
		s += fmt.Sprintf(", about %s left", time.Duration(float64(p.total-n)/rate*float64(time.Second)).Round(time.Second))
	}
	return s
}
