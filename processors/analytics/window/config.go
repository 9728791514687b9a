// Package window is the windowed-aggregation state machine behind rule SQL's
// GROUP BY over a tumbling or hopping window: per group key, event time in
// milliseconds, a per-partition watermark, allowed lateness and a late
// policy. It is a pure library: state goes through a Store (the partition's
// key space, e.g. a *processors.Tx), time comes from the events and from
// Advance, and nothing here reads a clock or talks to Kafka.
//
// # Windows
//
// Windows are aligned to the Unix epoch: a window is [start, start+Size)
// with start a multiple of Slide. Tumbling windows have Slide == Size (or
// Slide 0); hopping windows have Slide < Size, so each event lands in
// ceil(Size/Slide) windows (Size/Slide when Slide divides Size).
//
// # Watermark, closing and late events
//
// An Aggregator keeps one watermark for the partition: the largest event
// time it has seen, or a larger value given to Advance (for example the
// receive-time clock of an idle partition). It never moves back. A window
// closes, and its result is returned once, when
//
//	watermark >= End + AllowedLateness
//
// so events up to AllowedLateness behind the newest event still count.
// An event whose window has already closed is late for that window and
// follows the Config.Late policy:
//
//   - LateDLQ: the event is not added to the closed window; Outcome.Late
//     says so and the caller sends the event to the dead-letter topic.
//     (With hopping windows it is still added to those of its windows that
//     are open; Outcome.Missed lists the starts of the windows it missed.)
//   - LateUpdate: a closed window's state is kept for LateRetention after
//     it closed; a late event is added to it and an updated result with
//     Revision+1 is returned. Events later than that are treated as under
//     LateDLQ.
//
// # State and performance
//
// The Store is authoritative and always complete: every Add writes the
// windows it changed before returning (write-through: one Set per window
// updated, plus one per value when a Percentile is configured), so
// whatever the caller commits with the event's offset is the whole state,
// and a new Aggregator over the same store continues with identical
// results (a restart, a partition moved, a rebuild from the log). For
// speed the Aggregator keeps every open window's summary in memory (read
// with one scan on first use, about 150 bytes plus the group key per open
// window), so the hot path never reads the store or decodes; and it writes
// the watermark only when it crosses a window boundary (see mustPersist).
// Closing is one range scan per Slide of event time. Call Reset when the
// store is rolled back or replaced (a failed batch, a partition handed
// over); any error from Add or Advance resets the Aggregator by itself.
// One Aggregator serves one rule on one partition. See keys.go for the
// key layout.
package window

import (
	"errors"
	"fmt"
)

// LatePolicy says what happens to an event whose window has closed.
type LatePolicy int

const (
	// LateDLQ leaves closed windows alone and reports the event as late,
	// for the caller to send to the dead-letter topic.
	LateDLQ LatePolicy = iota
	// LateUpdate adds the event to the closed window (kept for
	// Config.LateRetention) and re-emits the window's result.
	LateUpdate
)

// String returns "dlq" or "update".
func (p LatePolicy) String() string {
	switch p {
	case LateDLQ:
		return "dlq"
	case LateUpdate:
		return "update"
	}
	return fmt.Sprintf("LatePolicy(%d)", int(p))
}

// Func is an aggregate function.
type Func int

const (
	// Count is the number of events in the window.
	Count Func = iota + 1
	// Sum is the sum of the values.
	Sum
	// Avg is the arithmetic mean.
	Avg
	// Min is the smallest value.
	Min
	// Max is the largest value.
	Max
	// First is the value with the smallest event time (the earliest to
	// arrive among equal times).
	First
	// Last is the value with the largest event time (the latest to
	// arrive among equal times).
	Last
	// StdDev is the population standard deviation, sqrt(sum((x-mean)^2)/n)
	// (Welford's algorithm); 0 for a single value.
	StdDev
	// Percentile is the exact P-th percentile of the window's values,
	// interpolated linearly between the closest ranks: with the n values
	// sorted, h = (n-1)*P/100 and the result is x[floor(h)] +
	// (h-floor(h))*(x[floor(h)+1]-x[floor(h)]) (numpy's default, Excel's
	// PERCENTILE.INC). Every value of the window is stored for it.
	Percentile
)

// String returns the function's SQL name.
func (f Func) String() string {
	switch f {
	case Count:
		return "count"
	case Sum:
		return "sum"
	case Avg:
		return "avg"
	case Min:
		return "min"
	case Max:
		return "max"
	case First:
		return "first"
	case Last:
		return "last"
	case StdDev:
		return "stddev"
	case Percentile:
		return "percentile"
	}
	return fmt.Sprintf("Func(%d)", int(f))
}

// Aggregate is one aggregate a window computes.
type Aggregate struct {
	// Func is the function.
	Func Func
	// P is the percentile in [0, 100], for Percentile only.
	P float64
}

// maxSpan bounds sizes and lateness (about 35 years in ms) and maxTime
// bounds event times, so window arithmetic never overflows int64.
const (
	maxSpan = int64(1) << 40
	maxTime = int64(1) << 61
)

// Config describes the windows of one rule. All times are milliseconds.
type Config struct {
	// Size is the window length, > 0.
	Size int64
	// Slide is the distance between window starts: 0 or Size for
	// tumbling windows, 0 < Slide < Size for hopping windows.
	Slide int64
	// AllowedLateness is how far behind the watermark an event may be and
	// still count in its window: a window closes when the watermark
	// reaches End + AllowedLateness. >= 0.
	AllowedLateness int64
	// Late is the policy for events whose window has closed.
	Late LatePolicy
	// LateRetention (LateUpdate only) is how long after closing a
	// window's state is kept for late updates; 0 means Size.
	LateRetention int64
	// Aggregates are computed for every window, in this order
	// (Result.Values has one value per aggregate).
	Aggregates []Aggregate
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("window: invalid config")

// Validate reports the first setting out of range.
func (c Config) Validate() error {
	switch {
	case c.Size <= 0 || c.Size > maxSpan:
		return fmt.Errorf("%w: size %d ms: must be between 1 and %d", ErrConfig, c.Size, maxSpan)
	case c.Slide < 0 || c.Slide > c.Size:
		return fmt.Errorf("%w: slide %d ms: must be between 1 and the size (%d), or 0 for tumbling windows", ErrConfig, c.Slide, c.Size)
	case c.AllowedLateness < 0 || c.AllowedLateness > maxSpan:
		return fmt.Errorf("%w: allowed lateness %d ms: must be between 0 and %d", ErrConfig, c.AllowedLateness, maxSpan)
	case c.LateRetention < 0 || c.LateRetention > maxSpan:
		return fmt.Errorf("%w: late retention %d ms: must be between 0 and %d", ErrConfig, c.LateRetention, maxSpan)
	case c.Late != LateDLQ && c.Late != LateUpdate:
		return fmt.Errorf("%w: unknown late policy %d", ErrConfig, int(c.Late))
	case len(c.Aggregates) == 0:
		return fmt.Errorf("%w: no aggregates", ErrConfig)
	}
	for i, a := range c.Aggregates {
		if a.Func < Count || a.Func > Percentile {
			return fmt.Errorf("%w: aggregate %d: unknown function %d", ErrConfig, i, int(a.Func))
		}
		if a.Func == Percentile && !(a.P >= 0 && a.P <= 100) {
			return fmt.Errorf("%w: aggregate %d: percentile %v: must be between 0 and 100", ErrConfig, i, a.P)
		}
	}
	return nil
}

// slide returns the effective slide.
func (c Config) slide() int64 {
	if c.Slide == 0 {
		return c.Size
	}
	return c.Slide
}

// retention returns the effective late retention.
func (c Config) retention() int64 {
	if c.LateRetention == 0 {
		return c.Size
	}
	return c.LateRetention
}

// needsValues reports whether some aggregate needs every value.
func (c Config) needsValues() bool {
	for _, a := range c.Aggregates {
		if a.Func == Percentile {
			return true
		}
	}
	return false
}
