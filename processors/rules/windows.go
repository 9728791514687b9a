package rules

import (
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/analytics/window"
	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/rulesql/value"
	"github.com/iotpipe/iotpipe/schemas"
)

// A GROUP BY rule runs one window.Aggregator per group of aggregate
// calls over the same argument (see aggGroup), all fed the same events in
// the same order (an event whose argument is not a number only moves that
// aggregator's watermark, with Advance), so their watermarks and closed
// windows stay in step; the results of one window are joined by (start,
// group key) into the values AggregateRow takes.
// Late events (their window closed: the watermark passed its end plus
// the rule's ALLOWED LATENESS) go to the DLQ with the reason.

var windowFuncs = map[string]window.Func{
	"count": window.Count, "sum": window.Sum, "avg": window.Avg, "min": window.Min, "max": window.Max,
	"first": window.First, "last": window.Last, "stddev": window.StdDev, "percentile": window.Percentile,
}

// windowFingerprint identifies a rule's window definition and aggregate
// functions: state written under one is never read under another.
func windowFingerprint(r *rulesql.Rule) string {
	var b strings.Builder
	w := r.Window
	fmt.Fprintf(&b, "%s:%d:%d:%d", w.Kind, w.Size.Milliseconds(), w.Slide.Milliseconds(), w.Lateness.Milliseconds())
	for _, a := range r.Aggregates {
		fmt.Fprintf(&b, ":%s", strings.ToLower(a.Func))
		if a.Arg == nil {
			b.WriteString("*")
		}
		if a.Param != 0 {
			fmt.Fprintf(&b, "%g", a.Param)
		}
	}
	fmt.Fprintf(&b, ":k%d", len(r.Keys))
	return b.String()
}

// maxEventTime bounds event times (ms), as the window package does.
const maxEventTime = int64(1) << 61

// windowRun is one GROUP BY rule on one partition.
type windowRun struct {
	groups  []aggGroup
	isCount []bool   // aggregate i is count (its value is an Int)
	gs      subStore // the last event of each group key
	baseWM  int64    // watermark after the partition's last event
	baseOK  bool
	// orphans are the state namespaces of aggregates merged into
	// another's group, emptied once (state written before the merge).
	orphans []subStore
	// enc, vals, has and results are scratch space for one event (vals,
	// has and results by group).
	enc     []byte
	vals    []float64
	has     []bool
	results [][]window.Result
}

// aggGroup is one window.Aggregator of a GROUP BY rule: the rule's
// aggregates whose argument is the same expression fed the same way
// (count(x): whether x is a value; percentile: numbers, kept; the
// others: numbers), so that each would keep the same summaries. Its
// state is the namespace of its first aggregate, which already holds
// what separate aggregators wrote before they were merged.
type aggGroup struct {
	agg     *window.Aggregator
	st      subStore
	members []int // the rule's aggregates, in the Aggregator's order
	count   bool  // fed with whether the argument is a value
}

// groupAggregates groups the aggregates of r (see aggGroup): by index
// of their group, and each group's members.
// separate puts every aggregate in a group of its own (as before they
// were merged; tests).
func groupAggregates(r *rulesql.Rule, separate bool) [][]int {
	var groups [][]int
	byKey := map[string]int{}
	for i, a := range r.Aggregates {
		if separate {
			groups = append(groups, []int{i})
			continue
		}
		f := strings.ToLower(a.Func)
		feed := "n"
		switch {
		case f == "count":
			feed = "c"
		case f == "percentile":
			feed = "p"
		}
		key := feed + a.ArgKey
		if a.Arg != nil && a.ArgKey == "" {
			key = "" // an argument that may differ from any other
		}
		if g, ok := byKey[key]; ok && key != "" {
			groups[g] = append(groups[g], i)
			continue
		}
		byKey[key] = len(groups)
		groups = append(groups, []int{i})
	}
	return groups
}

// prepare binds w's stores to the call and, the first time, empties the
// orphaned namespaces.
func (w *windowRun) prepare(tx *processors.Tx) error {
	w.gs.bind(tx)
	for i := range w.groups {
		w.groups[i].st.bind(tx)
	}
	for _, o := range w.orphans {
		var keys [][]byte
		err := o.bind(tx).Scan(nil, nil, func(k, _ []byte) bool {
			keys = append(keys, append([]byte(nil), k...))
			return true
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := o.Delete(k); err != nil {
				return err
			}
		}
	}
	w.orphans = nil
	return nil
}

func (w *windowRun) reset() {
	for _, g := range w.groups {
		g.agg.Reset()
	}
	w.baseOK = false
}

func (p *Processor) windowRun(ps *partState, ri *ruleInfo) (*windowRun, error) {
	if w, ok := ps.windows[string(ri.ns)]; ok {
		return w, nil
	}
	r := ri.rule
	w := &windowRun{gs: subStore{prefix: append(append([]byte(nil), ri.ns...), 'g')}}
	slide := int64(0)
	if r.Window.Kind == "hopping" {
		slide = r.Window.Slide.Milliseconds()
	}
	aggNS := func(i int) subStore {
		ns := append(append([]byte(nil), ri.ns...), 'a')
		ns = strconv.AppendInt(ns, int64(i), 10)
		return subStore{prefix: append(ns, 0)}
	}
	w.isCount = make([]bool, len(r.Aggregates))
	for _, members := range groupAggregates(r, p.separateAggregates) {
		g := aggGroup{members: members, st: aggNS(members[0])}
		var aggs []window.Aggregate
		for k, i := range members {
			a := r.Aggregates[i]
			f, ok := windowFuncs[strings.ToLower(a.Func)]
			if !ok {
				return nil, fmt.Errorf("aggregate %s is not supported", a.Func)
			}
			aggs = append(aggs, window.Aggregate{Func: f, P: a.Param * 100})
			w.isCount[i] = f == window.Count
			g.count = f == window.Count
			if k > 0 {
				w.orphans = append(w.orphans, aggNS(i))
			}
		}
		agg, err := window.New(window.Config{
			Size:            r.Window.Size.Milliseconds(),
			Slide:           slide,
			AllowedLateness: r.Window.Lateness.Milliseconds(),
			Late:            window.LateDLQ,
			Aggregates:      aggs,
		})
		if err != nil {
			return nil, err
		}
		g.agg = agg
		w.groups = append(w.groups, g)
	}
	n := len(w.groups)
	w.vals, w.has, w.results = make([]float64, n), make([]bool, n), make([][]window.Result, n)
	ps.windows[string(ri.ns)] = w
	return w, nil
}

// windowEvent adds an event that passes the rule's WHERE to its windows.
func (p *Processor) windowEvent(tx *processors.Tx, ps *partState, ri *ruleInfo, ev *processors.Event, in *rulesql.Input, st *subStore) error {
	r := ri.rule
	_, fired, err := ps.eval.Eval(r, in, st)
	if err != nil {
		return p.ruleError(tx, ri, ev, in, err)
	}
	if !fired {
		return nil
	}
	at := in.Timestamp
	if r.EventTime != nil {
		v, err := ps.eval.EvalProgram(r.EventTime, in, st)
		if err != nil {
			return p.ruleError(tx, ri, ev, in, err)
		}
		switch t := v.(type) {
		case int64:
			at = t
		case float64:
			if !(t >= -float64(maxEventTime) && t <= float64(maxEventTime)) {
				return p.ruleError(tx, ri, ev, in, fmt.Errorf("event time %v is out of range", t))
			}
			at = int64(t)
		default:
			return p.ruleError(tx, ri, ev, in, fmt.Errorf("event time is %s (%s), want a number of milliseconds since the epoch", value.Text(v), value.KindOf(v)))
		}
		// A device clock far ahead would move the partition's watermark
		// and make every other device's events late: an event time past
		// the receive time by more than MaxEventSkew goes to the DLQ.
		if skew := p.opts.MaxEventSkew; skew > 0 && at > in.Timestamp+skew.Milliseconds() {
			if !tx.DryRun() {
				p.metrics.late.WithLabelValues(r.Name).Inc()
			}
			p.dlqEvent(tx, ev, r.Name, fmt.Errorf("event time %d is %s past the receive time %d, more than the allowed skew (%s): a device clock ahead?",
				at, time.Duration(at-in.Timestamp)*time.Millisecond, in.Timestamp, skew))
			return nil
		}
	}
	var key string
	switch len(r.Keys) {
	case 0:
	case 1:
		v, err := ps.eval.EvalProgram(r.Keys[0], in, st)
		if err != nil {
			return p.ruleError(tx, ri, ev, in, err)
		}
		key = value.Text(v)
	default:
		parts := make([]string, len(r.Keys))
		for i, k := range r.Keys {
			v, err := ps.eval.EvalProgram(k, in, st)
			if err != nil {
				return p.ruleError(tx, ri, ev, in, err)
			}
			parts[i] = value.Text(v)
		}
		key = strings.Join(parts, "/")
	}
	w, err := p.windowRun(ps, ri)
	if err != nil {
		return err
	}
	if err := w.prepare(tx); err != nil {
		return err
	}
	w.enc = appendInput(w.enc[:0], in)
	if err := w.gs.Set([]byte(key), w.enc); err != nil {
		return err
	}
	// Evaluate every argument first, so that a failing one leaves all
	// the aggregators untouched (they stay in step).
	vals, has := w.vals, w.has
	for i, g := range w.groups {
		vals[i], has[i] = 0, true
		a := r.Aggregates[g.members[0]]
		if a.Arg == nil {
			continue
		}
		x, err := ps.eval.EvalProgram(a.Arg, in, st)
		if err != nil {
			return p.ruleError(tx, ri, ev, in, err)
		}
		if g.count {
			has[i] = !rulesql.IsUndefined(x) && x != nil
		} else {
			vals[i], has[i] = value.ToFloat(x)
			has[i] = has[i] && !math.IsNaN(vals[i]) && !math.IsInf(vals[i], 0)
		}
	}
	if at > maxEventTime || at < -maxEventTime {
		return p.ruleError(tx, ri, ev, in, fmt.Errorf("event time %d is out of range", at))
	}
	results := w.results
	clear(results)
	var late bool
	var missed []int64
	for i := range w.groups {
		g := &w.groups[i]
		if !has[i] {
			rs, err := g.agg.Advance(&g.st, at)
			if err != nil {
				return err
			}
			results[i] = rs
			continue
		}
		o, err := g.agg.Add(&g.st, key, at, vals[i])
		if err != nil {
			return err
		}
		results[i] = o.Results
		if o.Late {
			late = true
			missed = o.Missed
		}
	}
	if late {
		if !tx.DryRun() {
			p.metrics.late.WithLabelValues(r.Name).Inc()
		}
		p.dlqEvent(tx, ev, r.Name, fmt.Errorf("late event: event time %d is behind the watermark by more than the allowed lateness (%s); windows starting at %v have closed", at, r.Window.Lateness, missed))
	}
	wm, ok, err := w.groups[0].agg.Watermark(&w.groups[0].st)
	if err != nil {
		return err
	}
	w.baseWM, w.baseOK = wm, ok
	return p.windowResults(tx, ri, w, results, in)
}

// windowTick closes the windows of a partition that saw no event for
// Options.IdleAfter: its watermark moves on with the clock.
func (p *Processor) windowTick(tx *processors.Tx, ps *partState, ri *ruleInfo, now time.Time) error {
	w, err := p.windowRun(ps, ri)
	if err != nil {
		return err
	}
	if err := w.prepare(tx); err != nil {
		return err
	}
	if !w.baseOK {
		wm, ok, err := w.groups[0].agg.Watermark(&w.groups[0].st)
		if err != nil || !ok {
			return err
		}
		w.baseWM, w.baseOK = wm, true
		if ps.lastEvent.IsZero() {
			ps.lastEvent = now // after a restart: idle from now on
		}
	}
	idle := now.Sub(ps.lastEvent) - p.opts.IdleAfter
	if idle <= 0 {
		return nil
	}
	target := w.baseWM + idle.Milliseconds()
	results := make([][]window.Result, len(w.groups))
	for i := range w.groups {
		g := &w.groups[i]
		rs, err := g.agg.Advance(&g.st, target)
		if err != nil {
			return err
		}
		results[i] = rs
	}
	return p.windowResults(tx, ri, w, results, nil)
}

type winID struct {
	start int64
	key   string
	rev   int64
}

type joined struct {
	end    int64
	count  int64
	values []any
}

// windowResults joins the aggregators' results per window and emits
// each: an Aggregate record, then the rule's actions with the row.
func (p *Processor) windowResults(tx *processors.Tx, ri *ruleInfo, w *windowRun, results [][]window.Result, cur *rulesql.Input) error {
	if !slices.ContainsFunc(results, func(rs []window.Result) bool { return len(rs) > 0 }) {
		return nil // no window closed: the common case
	}
	var ids []winID
	byID := map[winID]*joined{}
	for g, rs := range results {
		for _, r := range rs {
			id := winID{r.Start, r.Key, r.Revision}
			j, ok := byID[id]
			if !ok {
				j = &joined{end: r.End, values: make([]any, len(w.isCount))}
				for k := range j.values {
					j.values[k] = rulesql.Undefined
				}
				byID[id] = j
				ids = append(ids, id)
			}
			for m, i := range w.groups[g].members {
				if w.isCount[i] {
					j.values[i] = int64(r.Values[m])
				} else {
					j.values[i] = r.Values[m]
				}
			}
			j.count = max(j.count, r.Count)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	sort.Slice(ids, func(a, b int) bool {
		if ids[a].start != ids[b].start {
			return ids[a].start < ids[b].start
		}
		if ids[a].key != ids[b].key {
			return ids[a].key < ids[b].key
		}
		return ids[a].rev < ids[b].rev
	})
	gs := &w.gs
	r := ri.rule
	for _, id := range ids {
		j := byID[id]
		in := cur
		if b, ok, err := gs.Get([]byte(id.key)); err != nil {
			return err
		} else if ok {
			if in, err = p.decodeInput(tx, b); err != nil {
				return err
			}
		}
		if in == nil {
			in = &rulesql.Input{Payload: rulesql.Undefined, Partition: tx.Partition()}
		}
		row := r.AggregateRow(in, j.values)
		agg := schemas.Aggregate{
			Thing: in.Thing, Rule: r.Name, Key: id.key, WindowStart: id.start, WindowEnd: j.end,
			Values: numericColumns(row), Count: j.count, Revision: int(id.rev),
		}
		if enc, err := value.MarshalJSON(row); err == nil {
			agg.Output = json.RawMessage(enc)
		}
		b, err := json.Marshal(&agg)
		if err != nil {
			return fmt.Errorf("encode aggregate: %w", err)
		}
		k := id.key
		if k == "" {
			k = r.Name
		}
		if cur == nil {
			// Closed by a tick: ids from the window's end, not from
			// when the tick ran.
			tx.At(time.UnixMilli(j.end), windowBase(tx.Partition(), id)+"/"+r.Name)
		}
		tx.Emit(&kgo.Record{Topic: p.opts.Topics.Aggregates, Key: []byte(k), Value: b,
			Headers: []kgo.RecordHeader{{Key: HeaderRule, Value: []byte(r.Name)}}})
		if !tx.DryRun() {
			p.metrics.windows.WithLabelValues(r.Name).Inc()
		}
		if err := p.fire(tx, ri, in, row, windowBase(tx.Partition(), id), j.end); err != nil {
			return err
		}
	}
	return nil
}

// windowBase is the first half of a window result's idempotency keys:
// "<partition>/w<start>.<revision>.<fnv32 of the group key>", the same
// whether an event or a tick closed the window.
func windowBase(partition int32, id winID) string {
	h := fnv.New32a()
	h.Write([]byte(id.key))
	return fmt.Sprintf("%d/w%d.%d.%08x", partition, id.start, id.rev, h.Sum32())
}

// numericColumns returns the numeric top-level columns of an output row.
func numericColumns(row any) map[string]float64 {
	m, ok := row.(map[string]any)
	if !ok {
		return map[string]float64{}
	}
	out := make(map[string]float64, len(m))
	for k, v := range m {
		switch t := v.(type) {
		case int64:
			out[k] = float64(t)
		case float64:
			out[k] = t
		}
	}
	return out
}
