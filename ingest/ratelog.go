package ingest

import (
	"sync"
	"time"
)

// rateLog lets one log line per key through per interval and counts the
// lines it held back, so a flood (a stalled subscriber dropping every
// message, a full disk refusing every publish, a connection storm at the
// cap) costs one line per interval with the count of what it stood for.
type rateLog struct {
	every time.Duration
	mu    sync.Mutex
	keys  map[string]*rateEntry
}

type rateEntry struct {
	next       time.Time // when the next line may go out
	suppressed int
}

func newRateLog(every time.Duration) *rateLog {
	return &rateLog{every: every, keys: map[string]*rateEntry{}}
}

// allow reports whether a line for key may be logged now and, if so, how
// many lines for key were held back since the last one.
func (r *rateLog) allow(key string, now time.Time) (ok bool, suppressed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.keys[key]
	if e == nil {
		if len(r.keys) >= 4096 {
			r.sweep(now)
		}
		e = &rateEntry{}
		r.keys[key] = e
	}
	if now.Before(e.next) {
		e.suppressed++
		return false, 0
	}
	suppressed, e.suppressed = e.suppressed, 0
	e.next = now.Add(r.every)
	return true, suppressed
}

// sweep forgets keys whose interval has passed with nothing held back, so
// the map stays bounded by the keys active within one interval.
func (r *rateLog) sweep(now time.Time) {
	for k, e := range r.keys {
		if e.suppressed == 0 && !now.Before(e.next) {
			delete(r.keys, k)
		}
	}
}
