package window

import (
	"errors"
	"fmt"
	"math"
)

// Result is the aggregate of one window of one group key.
type Result struct {
	// Key is the group key.
	Key string
	// Start and End bound the window, [Start, End), in ms.
	Start, End int64
	// Values holds one value per Config.Aggregates entry, in order.
	Values []float64
	// Count is the number of events in the window.
	Count int64
	// Revision is 0 for a window's first result and n for its n-th late
	// update (LateUpdate), so a consumer can keep the highest.
	Revision int64
}

// Outcome is what one Add produced.
type Outcome struct {
	// Results are the windows this event finished: those its event time
	// moved the watermark past (in order of start, then group key: shorter
	// keys first, then bytewise, the order of their state keys), then,
	// under LateUpdate, the closed windows it updated.
	Results []Result
	// Late is true when the event missed at least one of its windows
	// because it had closed (and could not be updated): under LateDLQ the
	// caller sends the event to the dead-letter topic.
	Late bool
	// Missed lists the starts of the windows the event was not added to.
	Missed []int64
}

// ErrInput is wrapped by errors about an event (its time or value), as
// opposed to errors of the store.
var ErrInput = errors.New("window: invalid event")

// noWatermark is the watermark before any event.
const noWatermark = math.MinInt64

// winID identifies an open window in the in-memory cache.
type winID struct {
	start int64
	key   string
}

// Aggregator runs the windows of one rule over one partition. It is not
// safe for concurrent use (a partition's events are processed in order).
type Aggregator struct {
	cfg              Config
	slide, retention int64
	keepValues       bool

	loaded    bool  // wm and open have been read from the store
	wm        int64 // the watermark
	persisted int64 // the watermark as last written to the store

	// open holds every open window's summary once loaded (write-through:
	// the store always has the same state), so adding never reads.
	open map[winID]*summary
	// scanned is the close bound of the last close scan; closing again is
	// needed only once the bound passes another window start.
	scanned   int64
	scannedOK bool

	kbuf, vbuf []byte
}

// New returns an Aggregator for cfg (validated).
func New(cfg Config) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Aggregates = append([]Aggregate(nil), cfg.Aggregates...)
	return &Aggregator{
		cfg:        cfg,
		slide:      cfg.slide(),
		retention:  cfg.retention(),
		keepValues: cfg.needsValues(),
		open:       make(map[winID]*summary),
	}, nil
}

// Reset drops everything held in memory; the next call reads the store
// again. Call it when the store was rolled back or replaced (a failed
// batch, a partition handed over). Any error from Add or Advance resets
// the Aggregator by itself.
func (a *Aggregator) Reset() {
	a.loaded = false
	a.scannedOK = false
	clear(a.open)
}

// Watermark returns the partition's watermark, false before any event.
// After a restart it may read lower than before, by less than one Slide:
// it is stored only when it crosses a window boundary.
func (a *Aggregator) Watermark(st Store) (int64, bool, error) {
	if err := a.load(st); err != nil {
		return 0, false, err
	}
	return a.wm, a.wm != noWatermark, nil
}

func (a *Aggregator) load(st Store) error {
	if a.loaded {
		return nil
	}
	v, ok, err := st.Get(metaKey)
	if err != nil {
		return fmt.Errorf("window: read watermark: %w", err)
	}
	a.wm = noWatermark
	if ok {
		if len(v) != 8 {
			return fmt.Errorf("window: corrupt watermark (%d bytes)", len(v))
		}
		a.wm = readTime(v)
	}
	a.persisted = a.wm
	clear(a.open)
	var bad error
	err = st.Scan([]byte{prefixOpen}, []byte{prefixOpen + 1}, func(k, v []byte) bool {
		start, key, ok := parseWindowKey(k)
		if !ok {
			bad = fmt.Errorf("window: corrupt window key %x", k)
			return false
		}
		s := new(summary)
		if err := s.decode(v, a.keepValues); err != nil {
			bad = fmt.Errorf("window %d of %q: %w", start, key, err)
			return false
		}
		a.open[winID{start, key}] = s
		return true
	})
	if err != nil {
		return fmt.Errorf("window: load open windows: %w", err)
	}
	if bad != nil {
		return bad
	}
	a.loaded = true
	return nil
}

// Add adds the event (group key, event time at in ms, value v) to its
// windows: it first moves the watermark to at if that is later (closing
// the windows it passes), then adds v to every window holding at, or
// applies the late policy to those already closed. v must be finite (use
// any value with Count alone); at must be within +/-2^61.
func (a *Aggregator) Add(st Store, key string, at int64, v float64) (Outcome, error) {
	var out Outcome
	if at < -maxTime || at > maxTime {
		return out, fmt.Errorf("%w: event time %d ms out of range", ErrInput, at)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return out, fmt.Errorf("%w: value %v is not finite", ErrInput, v)
	}
	res, err := a.add(st, key, at, v, &out)
	if err != nil {
		a.Reset()
		return Outcome{}, err
	}
	out.Results = res
	return out, nil
}

func (a *Aggregator) add(st Store, key string, at int64, v float64, out *Outcome) ([]Result, error) {
	if err := a.load(st); err != nil {
		return nil, err
	}
	results, err := a.advance(st, at, nil)
	if err != nil {
		return nil, err
	}
	size := a.cfg.Size
	bound := a.closeBound()
	first := floorDiv(at-size, a.slide)*a.slide + a.slide
	for s := first; s <= at; s += a.slide {
		switch {
		case s > bound:
			if err := a.addOpen(st, s, key, at, v); err != nil {
				return nil, err
			}
		case a.cfg.Late == LateUpdate && s > bound-a.retention:
			r, err := a.addClosed(st, s, key, at, v)
			if err != nil {
				return nil, err
			}
			results = append(results, r)
		default:
			out.Late = true
			out.Missed = append(out.Missed, s)
		}
	}
	return results, nil
}

// closeBound is the largest window start that is closed at the current
// watermark: start + Size + AllowedLateness <= wm.
func (a *Aggregator) closeBound() int64 {
	if a.wm == noWatermark {
		return noWatermark
	}
	return a.wm - a.cfg.AllowedLateness - a.cfg.Size
}

// addOpen adds to an open window. The cache holds every open window, so a
// miss is a new window.
func (a *Aggregator) addOpen(st Store, start int64, key string, at int64, v float64) error {
	id := winID{start, key}
	s := a.open[id]
	if s == nil {
		s = new(summary)
		a.open[id] = s
	}
	a.kbuf = appendWindowKey(a.kbuf[:0], prefixOpen, start, key)
	s.add(at, v)
	return a.write(st, s, start, key, v)
}

// write stores s under a.kbuf (the window's summary key) after v was
// added to it; for Percentile v joins the tail, and a full tail becomes a
// value block under its own key.
func (a *Aggregator) write(st Store, s *summary, start int64, key string, v float64) error {
	if a.keepValues {
		s.tail = append(s.tail, v)
		if len(s.tail) == blockSize {
			vk := appendValueKey(nil, start, key, (s.count-1)/blockSize)
			a.vbuf = a.vbuf[:0]
			for _, x := range s.tail {
				a.vbuf = encodeFloat(a.vbuf, x)
			}
			if err := st.Set(vk, a.vbuf); err != nil {
				return fmt.Errorf("window: write values of window %d of %q: %w", start, key, err)
			}
			s.tail = s.tail[:0]
		}
	}
	a.vbuf = s.appendEncode(a.vbuf[:0])
	if err := st.Set(a.kbuf, a.vbuf); err != nil {
		return fmt.Errorf("window: write window %d of %q: %w", start, key, err)
	}
	return nil
}

// appendBlock appends the values of a stored value block.
func appendBlock(vals []float64, b []byte) ([]float64, bool) {
	if len(b) != 8*blockSize {
		return vals, false
	}
	for ; len(b) > 0; b = b[8:] {
		vals = append(vals, decodeFloat(b))
	}
	return vals, true
}

// addClosed adds a late event to a closed window kept for updates (or
// starts one) and returns its updated result.
func (a *Aggregator) addClosed(st Store, start int64, key string, at int64, v float64) (Result, error) {
	a.kbuf = appendWindowKey(a.kbuf[:0], prefixClosed, start, key)
	var s summary
	old, ok, err := st.Get(a.kbuf)
	if err != nil {
		return Result{}, fmt.Errorf("window: read closed window %d of %q: %w", start, key, err)
	}
	if ok {
		if err := s.decode(old, a.keepValues); err != nil {
			return Result{}, fmt.Errorf("window %d of %q: %w", start, key, err)
		}
		s.revision++
	}
	s.emitted = true
	s.add(at, v)
	if err := a.write(st, &s, start, key, v); err != nil {
		return Result{}, err
	}
	return a.result(st, &s, start, key)
}

// result builds a window's Result, reading its values for Percentile.
func (a *Aggregator) result(st Store, s *summary, start int64, key string) (Result, error) {
	var vals []float64
	if a.keepValues {
		lo := appendWindowKey(nil, prefixValue, start, key)
		vals = make([]float64, 0, s.count)
		var bad bool
		err := st.Scan(lo, prefixEnd(lo), func(_, v []byte) bool {
			var ok bool
			vals, ok = appendBlock(vals, v)
			bad = !ok
			return ok
		})
		if err != nil {
			return Result{}, fmt.Errorf("window: read values of window %d of %q: %w", start, key, err)
		}
		if bad {
			return Result{}, fmt.Errorf("window: corrupt values of window %d of %q", start, key)
		}
	}
	return a.resultOf(s, start, key, vals)
}

// resultOf builds a window's Result from its summary and, for Percentile,
// the values of its full blocks (in any order; sorted in place).
func (a *Aggregator) resultOf(s *summary, start int64, key string, vals []float64) (Result, error) {
	var sorted []float64
	if a.keepValues {
		vals = append(vals, s.tail...)
		if int64(len(vals)) != s.count {
			return Result{}, fmt.Errorf("window: corrupt values of window %d of %q: %d stored, %d counted", start, key, len(vals), s.count)
		}
		sortFloats(vals)
		sorted = vals
	}
	return Result{
		Key:      key,
		Start:    start,
		End:      start + a.cfg.Size,
		Values:   s.values(a.cfg.Aggregates, sorted),
		Count:    s.count,
		Revision: s.revision,
	}, nil
}

// Advance moves the watermark to wm if that is later (values beyond
// +/-2^61 are clamped) and returns the results of the windows it closes,
// in order of start, then group key (as in Outcome.Results). Use it to
// close the windows of an idle partition, e.g. from the receive-time clock.
func (a *Aggregator) Advance(st Store, wm int64) ([]Result, error) {
	wm = max(min(wm, maxTime), -maxTime)
	if err := a.load(st); err != nil {
		a.Reset()
		return nil, err
	}
	res, err := a.advance(st, wm, nil)
	if err != nil {
		a.Reset()
		return nil, err
	}
	return res, nil
}

// advance raises the watermark to wm and closes (and purges) windows.
func (a *Aggregator) advance(st Store, wm int64, results []Result) ([]Result, error) {
	if wm > a.wm {
		a.wm = wm
		if a.mustPersist(wm) {
			if err := st.Set(metaKey, appendTime(a.vbuf[:0], wm)); err != nil {
				return nil, fmt.Errorf("window: write watermark: %w", err)
			}
			a.persisted = wm
		}
	}
	bound := a.closeBound()
	if bound == noWatermark {
		return results, nil
	}
	if a.scannedOK && floorDiv(bound, a.slide) == floorDiv(a.scanned, a.slide) {
		return results, nil
	}
	// Windows up to the last scanned bound are already closed (and
	// purged): start the scans after them, so they never walk the
	// tombstones of earlier windows.
	from := int64(noWatermark)
	if a.scannedOK {
		from = a.scanned + 1
	}
	results, err := a.closeWindows(st, from, bound, results)
	if err != nil {
		return nil, err
	}
	if a.cfg.Late == LateUpdate {
		pfrom := int64(noWatermark)
		if a.scannedOK {
			pfrom = a.scanned - a.retention + 1
		}
		if err := a.purge(st, pfrom, bound-a.retention); err != nil {
			return nil, err
		}
	}
	a.scanned, a.scannedOK = bound, true
	return results, nil
}

// mustPersist reports whether the watermark wm must be written. Every
// decision the watermark makes compares it with window starts, which are
// multiples of Slide: whether a window is closed depends only on
// floor((wm-AllowedLateness-Size)/Slide), and whether a closed window is
// still kept for late updates only on floor((wm-AllowedLateness-Size-
// LateRetention)/Slide). So the watermark is written only when one of these
// changes (once per Slide of event time, not once per event); after a
// restart the watermark may read lower than before, but by less than one
// Slide and with the same decisions and results.
func (a *Aggregator) mustPersist(wm int64) bool {
	if a.persisted == noWatermark {
		return true
	}
	d := a.cfg.AllowedLateness + a.cfg.Size
	if floorDiv(wm-d, a.slide) != floorDiv(a.persisted-d, a.slide) {
		return true
	}
	return a.cfg.Late == LateUpdate && floorDiv(wm-d-a.retention, a.slide) != floorDiv(a.persisted-d-a.retention, a.slide)
}

// entry is a copied key-value pair from a scan.
type entry struct{ k, v []byte }

// scanCopy returns copies of the pairs in [lo, hi).
func scanCopy(st Store, lo, hi []byte) ([]entry, error) {
	var es []entry
	err := st.Scan(lo, hi, func(k, v []byte) bool {
		es = append(es, entry{append([]byte(nil), k...), append([]byte(nil), v...)})
		return true
	})
	return es, err
}

// closeWindows emits and closes every open window with from <= start <= bound.
// One scan finds them and, for Percentile, one more reads all their values.
func (a *Aggregator) closeWindows(st Store, from, bound int64, results []Result) ([]Result, error) {
	es, err := scanCopy(st, timeBound(prefixOpen, from), timeBound(prefixOpen, bound+1))
	if err != nil {
		return nil, fmt.Errorf("window: scan windows to close: %w", err)
	}
	if len(es) == 0 {
		return results, nil
	}
	var vals map[winID][]float64
	if a.keepValues {
		vals = make(map[winID][]float64, len(es))
		ves, err := scanCopy(st, timeBound(prefixValue, from), timeBound(prefixValue, bound+1))
		if err != nil {
			return nil, fmt.Errorf("window: scan values of windows to close: %w", err)
		}
		for _, e := range ves {
			var start int64
			var key string
			ok := len(e.k) >= 8
			if ok {
				start, key, ok = parseWindowKey(e.k[:len(e.k)-8])
			}
			if !ok {
				return nil, fmt.Errorf("window: corrupt value key %x", e.k)
			}
			id := winID{start, key}
			if vals[id], ok = appendBlock(vals[id], e.v); !ok {
				return nil, fmt.Errorf("window: corrupt values of window %d of %q", start, key)
			}
			// Under LateDLQ every window in the range is closed for
			// good: drop all its values.
			if a.cfg.Late == LateDLQ {
				if err := st.Delete(e.k); err != nil {
					return nil, fmt.Errorf("window: delete value of window %d of %q: %w", start, key, err)
				}
			}
		}
	}
	for _, e := range es {
		start, key, ok := parseWindowKey(e.k)
		if !ok {
			return nil, fmt.Errorf("window: corrupt window key %x", e.k)
		}
		var s summary
		if err := s.decode(e.v, a.keepValues); err != nil {
			return nil, fmt.Errorf("window %d of %q: %w", start, key, err)
		}
		id := winID{start, key}
		r, err := a.resultOf(&s, start, key, vals[id])
		if err != nil {
			return nil, err
		}
		results = append(results, r)
		delete(a.open, id)
		if err := st.Delete(e.k); err != nil {
			return nil, fmt.Errorf("window: delete closed window %d of %q: %w", start, key, err)
		}
		if a.cfg.Late == LateUpdate {
			s.emitted = true
			ck := appendWindowKey(nil, prefixClosed, start, key)
			if err := st.Set(ck, s.appendEncode(nil)); err != nil {
				return nil, fmt.Errorf("window: keep closed window %d of %q: %w", start, key, err)
			}
		}
	}
	return results, nil
}

// purge forgets closed windows with from <= start <= bound (LateUpdate): their
// summaries and values, two range scans.
func (a *Aggregator) purge(st Store, from, bound int64) error {
	for _, p := range []byte{prefixClosed, prefixValue} {
		if p == prefixValue && !a.keepValues {
			continue
		}
		es, err := scanCopy(st, timeBound(p, from), timeBound(p, bound+1))
		if err != nil {
			return fmt.Errorf("window: scan closed windows to purge: %w", err)
		}
		for _, e := range es {
			if err := st.Delete(e.k); err != nil {
				return fmt.Errorf("window: purge %x: %w", e.k, err)
			}
		}
	}
	return nil
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}

// floorDiv is a / b rounded towards negative infinity (b > 0).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
