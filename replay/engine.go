package replay

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/rules"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/rulesql/ruletest"
	"github.com/iotpipe/iotpipe/schemas"
)

// outputsTopic is where the rules processor emits its outputs in a
// replay (rules.Options.DryRunOutputs). Nothing is ever produced there:
// a dry run's records stay in the harness.
const outputsTopic = "iotpipe.replay.outputs"

// segmentMax bounds the events held before they run (one batch per
// partition); a tick runs what is held first whatever its size.
const segmentMax = 4096

// batchEvents is how many events of a partition go into one batch of
// the harness (processors.Harness.BatchEvents), over segments and ticks.
var batchEvents = 4096

// Options configure an Engine.
type Options struct {
	// Topics are the log's topic names (default schemas.DefaultTopics()).
	Topics schemas.Topics
	// Partitions is the events topic's partition count (default 1), as
	// processors see it through Tx.PartitionOf (get_thing_shadow).
	Partitions int32
	// Logger receives the rules processor's logs (default: none).
	Logger *slog.Logger
	// Workers is how many goroutines run the partitions (default
	// runtime.GOMAXPROCS(0), at most Partitions): partition p runs on
	// worker p % Workers. The outputs and their order do not depend on
	// it.
	Workers int
}

// Output is one rule output of a replay.
type Output struct {
	// Rule is the rule's name.
	Rule string
	// Line is the output as iotpipe rules test prints it, without the
	// newline.
	Line []byte
	// Source is where it comes from: "<partition>/<offset>" of an event,
	// or "<partition>/t<ms>" of a timer or window a tick closed.
	Source string
	// Thing is the thing of the event the output renders against (for
	// a tick's output, the thing of the timer or the window's last event).
	Thing string
	// Event is the event it comes from (nil for a tick's output).
	Event *Event
	// At is the event's receive time, or the deadline or window end of a
	// tick's output.
	At time.Time
}

// RuleStats counts what one rule did in a replay.
type RuleStats struct {
	Rule string `json:"rule"`
	// Matched counts the events whose topic matched the rule's filter.
	Matched int64 `json:"matched"`
	// Fired counts its outputs (a resolved event is one).
	Fired int64 `json:"fired"`
	// Errors counts the failures that sent an event to the DLQ or fired
	// the rule's error action; LastError is the last one's reason.
	Errors    int64  `json:"errors"`
	LastError string `json:"last_error,omitempty"`
}

// Summary is what a replay went through.
type Summary struct {
	// Events counts the events replayed; Undecodable those whose envelope
	// could not be decoded (processors skip them too).
	Events      int64 `json:"events"`
	Undecodable int64 `json:"undecodable"`
	// First and Last are the receive times of the first and last event.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	// Rules are the rules in load order.
	Rules []RuleStats `json:"rules"`
}

// Engine runs a rule set over events with every effect off: the rules
// processor (and the shadow processor, for get_thing_shadow) in a
// processors.Harness with DryRun, from empty state. Time is the events':
// the harness clock follows their receive times and, when an event
// crosses into a new second (ruletest.TickAt), every partition is ticked
// first, so FOR timers and windows fire as in the stream and as iotpipe
// rules test fires them. Outputs come in the events' order (a tick's
// before the event that crossed it, per rule in load order, then by
// deadline and thing). Partitions are independent (state and ticks are
// per partition), so they run on Options.Workers goroutines while the
// caller adds the next events; outputs are passed to emit on the
// caller's goroutine, in Add or Close. An Engine is not safe for
// concurrent use.
type Engine struct {
	set    *rulesql.Set
	index  map[string]int
	h      *processors.Harness
	topics schemas.Topics
	emit   func(Output) error
	ticks  bool // the set has rules that tick (FOR, GROUP BY)

	started bool
	ticked  int64 // the last tick, epoch ms
	seg     []*Event
	seen    []int32 // partitions the harness has tasks for, sorted
	added   int64   // events passed to segments so far

	workers []chan *job
	wg      sync.WaitGroup
	failed  atomic.Bool // a job failed: workers skip the rest
	// pending are the steps sent to the workers and not yet emitted, in
	// order; held counts their events.
	pending []*step
	held    int
	// emitting is the position of the event or tick whose outputs are
	// being emitted, done that of the last step emitted: every output
	// up to it was emitted (see step.pos).
	emitting, done int64
	err            error // the first failure: the engine is done
	closed         bool

	sum     Summary
	matched []*rulesql.Rule
	before  func(*Event) error
}

// NewEngine returns an Engine running set that passes every output to
// emit, in order.
func NewEngine(set *rulesql.Set, opts Options, emit func(Output) error) (*Engine, error) {
	def := schemas.DefaultTopics()
	if opts.Topics.Events == "" {
		opts.Topics = def
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Partitions = max(opts.Partitions, 1)
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	opts.Workers = min(opts.Workers, int(opts.Partitions))
	rp := rules.New(rules.Options{Topics: opts.Topics, Shadow: shadow.NewReader(nil), DryRunOutputs: outputsTopic, Logger: opts.Logger})
	rp.SetRules(set)
	h, err := processors.NewHarness(shadow.New(shadow.Options{Topics: opts.Topics}), rp)
	if err != nil {
		return nil, err
	}
	h.DryRun, h.DropChangelog, h.Partitions, h.DLQ = true, true, int(opts.Partitions), opts.Topics.DLQ
	h.BatchEvents = batchEvents
	e := &Engine{set: set, index: map[string]int{}, h: h, topics: opts.Topics, emit: emit, emitting: -1, done: -1}
	for i, r := range set.Rules {
		e.index[r.Name] = i
		e.sum.Rules = append(e.sum.Rules, RuleStats{Rule: r.Name})
		e.ticks = e.ticks || r.For != nil || r.Window != nil
	}
	e.workers = make([]chan *job, opts.Workers)
	for i := range e.workers {
		ch := make(chan *job, 64)
		e.workers[i] = ch
		e.wg.Add(1)
		go e.work(ch)
	}
	return e, nil
}

// Add replays one event (events must come in the order Read passes
// them). Outputs may come later: in a later Add, or from Close.
func (e *Engine) Add(ctx context.Context, ev *Event) error {
	if e.err != nil {
		return e.err
	}
	if ev.Err != nil {
		e.sum.Undecodable++
		return nil
	}
	e.sum.Events++
	if e.sum.First.IsZero() {
		e.sum.First = ev.Time()
	}
	e.sum.Last = ev.Time()
	if ruletest.Routable(string(ev.Envelope.Type)) {
		// Time passes with the events rules see, as in rules test. A
		// set with no rule that ticks has nothing to run then, so the
		// held events go on (a batch's clock, its partition's last
		// event, matters only to ticks and to a shadow update without a
		// receive time).
		if t := ruletest.TickAt(ev.Time().UnixMilli()); !e.started {
			e.started, e.ticked = true, t
		} else if t > e.ticked && e.ticks {
			if err := e.flush(ctx); err != nil {
				return err
			}
			e.ticked = t
			if err := e.tick(ctx, t); err != nil {
				return err
			}
		}
		e.matched = e.set.Router.AppendMatch(e.matched[:0], ev.Envelope.Topic)
		for _, r := range e.matched {
			i := r.Index()
			if i >= len(e.set.Rules) || e.set.Rules[i] != r {
				i = e.index[r.Name] // the rule is in another set since
			}
			e.sum.Rules[i].Matched++
		}
	}
	if e.before != nil {
		if err := e.before(ev); err != nil {
			return err
		}
	}
	e.seg = append(e.seg, ev)
	e.added++
	if len(e.seg) >= segmentMax || e.before != nil {
		return e.flush(ctx)
	}
	return nil
}

// Close runs the events still held, emits what is left and releases the
// engine. Time does not pass beyond the last event: a FOR timer or
// window not due by then does not fire.
func (e *Engine) Close(ctx context.Context) error {
	if e.closed {
		return e.err
	}
	e.closed = true
	err := e.err
	if err == nil {
		if err = e.flush(ctx); err == nil {
			err = e.drain(true)
		}
	}
	for _, ch := range e.workers {
		close(ch)
	}
	e.wg.Wait()
	return errors.Join(err, e.h.Commit(), e.h.Close())
}

// Summary returns what the engine went through so far (rule outputs and
// errors as far as they were emitted).
func (e *Engine) Summary() Summary {
	s := e.sum
	s.Rules = slices.Clone(e.sum.Rules)
	return s
}

// flush sends the held events to the workers, a batch per partition
// (state of different partitions is independent, so this is the same as
// running them in order); their outputs are emitted in the events'
// order.
func (e *Engine) flush(ctx context.Context) error {
	if len(e.seg) == 0 {
		return nil
	}
	st := &step{pos: 2 * e.added, evs: e.seg, byPart: map[int32]*job{}}
	e.seg = nil
	for _, ev := range st.evs {
		j := st.byPart[ev.Partition]
		if j == nil {
			j = &job{st: st, ctx: ctx, p: ev.Partition}
			st.byPart[ev.Partition] = j
		}
		j.evs = append(j.evs, ev)
		j.now = ev.Time() // the task's clock: the partition's last event
	}
	for _, p := range slices.Sorted(maps.Keys(st.byPart)) {
		e.see(p)
		st.jobs = append(st.jobs, st.byPart[p])
	}
	return e.send(st)
}

// tick runs every partition's timers and windows at t (epoch ms); what
// they fire is emitted per rule in load order, then by deadline (or
// window end), then thing.
func (e *Engine) tick(ctx context.Context, t int64) error {
	st := &step{pos: 2*e.added + 1}
	for _, p := range e.seen {
		st.jobs = append(st.jobs, &job{st: st, ctx: ctx, p: p, now: time.UnixMilli(t)})
	}
	return e.send(st)
}

// see notes that partition p has a task in the harness.
func (e *Engine) see(p int32) {
	if i, ok := slices.BinarySearch(e.seen, p); !ok {
		e.seen = slices.Insert(e.seen, i, p)
	}
}

// output reads one record the harness emitted: a rule output (returned)
// or a rule's failure (counted).
func (e *Engine) output(r *kgo.Record) (Output, bool) {
	rule := string(schemas.HeaderValue(r.Headers, rules.HeaderRule))
	i, known := e.index[rule]
	switch {
	case r.Topic == outputsTopic && known:
		e.sum.Rules[i].Fired++
		o := Output{Rule: rule, Line: r.Value, Source: sourceOf(r), Thing: string(schemas.HeaderValue(r.Headers, rules.HeaderThing))}
		if _, at, ok := strings.Cut(o.Source, "/t"); ok { // "<partition>/t<unix ms>.<hash>" (processors.Tx.At)
			at, _, _ = strings.Cut(at, ".")
			ms, _ := strconv.ParseInt(at, 10, 64)
			o.At = time.UnixMilli(ms)
		}
		return o, true
	case r.Topic == e.topics.DLQ:
		if rule = string(schemas.HeaderValue(r.Headers, "dlq.rule")); rule != "" {
			if i, ok := e.index[rule]; ok {
				e.sum.Rules[i].Errors++
				e.sum.Rules[i].LastError = string(schemas.HeaderValue(r.Headers, schemas.HeaderDLQReason))
			}
		}
	case r.Topic == e.topics.Actions && known && bytes.Contains(r.Value, []byte(`"error_action":true`)):
		var a schemas.Action
		if err := json.Unmarshal(r.Value, &a); err == nil {
			e.sum.Rules[i].Errors++
			e.sum.Rules[i].LastError = a.Error
		}
	}
	return Output{}, false
}

// sourceOf returns the id base of what a processor emitted: its iot.src
// header without "/<processor>/<seq>".
func sourceOf(r *kgo.Record) string {
	src := string(schemas.HeaderValue(r.Headers, schemas.HeaderSource))
	for range 2 {
		if i := strings.LastIndexByte(src, '/'); i >= 0 {
			src = src[:i]
		}
	}
	return src
}
