package rules

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/schemas"
)

// Name is the processor's name, and its state namespace.
const Name = "rules"

// Processor runs the loaded rules over every event of its partitions.
// Create it with New, load rules with Reload (or Watch, or SetRules), and
// hand it to the processors runtime. It is safe to reload while events
// are processed: each event sees one complete rule set.
type Processor struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics

	cur atomic.Pointer[loaded]

	statsMu sync.Mutex
	stats   map[string]*ruleStats

	reloadMu sync.Mutex
	dir      string
	files    map[string]*fileState

	// separateAggregates runs one window aggregator per aggregate call,
	// as before calls over the same argument shared one (tests).
	separateAggregates bool
}

// loaded is one rule set with what the processor derived from it.
type loaded struct {
	set  *rulesql.Set
	info map[*rulesql.Rule]*ruleInfo
	// byIndex is info by the rules' Index in set (see infoOf).
	byIndex  []*ruleInfo
	windows  []*ruleInfo // GROUP BY rules, in load order
	duration []*ruleInfo // FOR rules, in load order
	at       time.Time
}

// ruleInfo is a rule of the current set with its counters and state
// namespaces.
type ruleInfo struct {
	rule  *rulesql.Rule
	stats *ruleStats
	// fp identifies the rule's windows or duration definition: state
	// kept for one definition is never read by another (editing the
	// window of a rule starts it afresh).
	fp string
	// ns is the rule's state namespace for windows or timers:
	// kind | name | 0 | fp | 0.
	ns []byte
	// Prometheus children, resolved once per load.
	cMatched, cFired, cErrors prometheus.Counter
	cActions                  []prometheus.Counter // by action index
	cErrorAction              prometheus.Counter
}

// New returns a Processor with no rules loaded.
func New(opts Options) *Processor {
	o := opts.withDefaults()
	p := &Processor{
		opts:    o,
		log:     o.Logger.With("processor", Name),
		metrics: newMetrics(),
		stats:   map[string]*ruleStats{},
		files:   map[string]*fileState{},
	}
	p.cur.Store(p.newLoaded(&rulesql.Set{}))
	return p
}

// Name implements processors.Processor.
func (p *Processor) Name() string { return Name }

// Rules returns the rule set in use.
func (p *Processor) Rules() *rulesql.Set { return p.cur.Load().set }

// SetRules replaces the rule set at once (tests and embedders; Reload
// and Watch use it too).
func (p *Processor) SetRules(set *rulesql.Set) {
	p.cur.Store(p.newLoaded(set))
}

func (p *Processor) newLoaded(set *rulesql.Set) *loaded {
	l := &loaded{set: set, info: make(map[*rulesql.Rule]*ruleInfo, len(set.Rules)), at: time.Now()}
	for _, r := range set.Rules {
		ri := &ruleInfo{rule: r, stats: p.ruleStats(r),
			cMatched: p.metrics.matched.WithLabelValues(r.Name),
			cFired:   p.metrics.fired.WithLabelValues(r.Name),
			cErrors:  p.metrics.errors.WithLabelValues(r.Name),
		}
		for _, a := range r.Actions {
			ri.cActions = append(ri.cActions, p.metrics.actions.WithLabelValues(r.Name, a.Type))
		}
		if r.ErrorAction != nil {
			ri.cErrorAction = p.metrics.actions.WithLabelValues(r.Name, r.ErrorAction.Type)
		}
		switch {
		case r.Window != nil:
			ri.fp = windowFingerprint(r)
			ri.ns = namespace('w', r.Name, ri.fp)
			l.windows = append(l.windows, ri)
		case r.For != nil:
			ri.fp = fmt.Sprintf("for:%d:%t", r.For.Duration, r.For.Resolve)
			ri.ns = namespace('t', r.Name, ri.fp)
			l.duration = append(l.duration, ri)
		}
		l.info[r] = ri
		l.byIndex = append(l.byIndex, ri)
	}
	return l
}

// infoOf returns the info of a rule of the set: by its index (a slice,
// not a map, on the hot path), or from the map when the rule has been
// put in another set since.
func (l *loaded) infoOf(r *rulesql.Rule) *ruleInfo {
	if i := r.Index(); i < len(l.byIndex) && l.byIndex[i].rule == r {
		return l.byIndex[i]
	}
	return l.info[r]
}

func namespace(kind byte, rule, fp string) []byte {
	b := make([]byte, 0, len(rule)+len(fp)+3)
	b = append(b, kind)
	b = append(b, rule...)
	b = append(b, 0)
	b = append(b, fp...)
	return append(b, 0)
}

// partState is what the processor holds in memory for one partition
// task: caches over the state store (window aggregators, timers) and
// the time of the last event. It lives in the task's memo
// (processors.Memo.Local), which the runtime empties whenever the state
// may have changed other than through this processor's calls (a batch
// or a call that failed, a partition assigned anew), so the caches never
// outlive the state they mirror.
type partState struct {
	lastEvent time.Time // tx.Now of the last event
	windows   map[string]*windowRun
	timers    map[string]*durationRun
	// st is the store of the rules' stateful functions, in the input
	// of the current event and matched the rules it routes to: reused
	// for every event.
	st      subStore
	in      inputWithShadow
	matched []*rulesql.Rule
	// eval evaluates the partition's rules (one at a time, on the
	// task's goroutine).
	eval rulesql.Evaluator
}

func part(tx *processors.Tx) *partState {
	if ps, ok := tx.Memo().Local().(*partState); ok {
		return ps
	}
	ps := &partState{windows: map[string]*windowRun{}, timers: map[string]*durationRun{}, st: subStore{prefix: []byte{'s'}}}
	tx.Memo().SetLocal(ps)
	return ps
}

// routable reports whether rules see events of this type: publishes and
// the lifecycle events (on $aws/events/presence/...).
func routable(t schemas.EventType) bool {
	return t == schemas.EventPublish || t == schemas.EventConnected || t == schemas.EventDisconnected
}

// inputWithShadow allocates an input with its shadow binding at once.
type inputWithShadow struct {
	in rulesql.Input
	sh txShadow
}

// newInput returns an empty input whose get_thing_shadow() reads through
// tx at time at.
func (p *Processor) newInput(tx *processors.Tx, at time.Time) *rulesql.Input {
	if p.opts.Shadow == nil {
		return &rulesql.Input{}
	}
	x := &inputWithShadow{sh: txShadow{r: p.opts.Shadow, tx: tx, at: at}}
	x.in.Shadow = &x.sh
	return &x.in
}

// input builds what rules see of an event, in ps's input.
func (p *Processor) input(tx *processors.Tx, ps *partState, ev *processors.Event) *rulesql.Input {
	ps.in = inputWithShadow{}
	in := &ps.in.in
	if p.opts.Shadow != nil {
		ps.in.sh = txShadow{r: p.opts.Shadow, tx: tx, at: ev.ReceivedAt()}
		in.Shadow = &ps.in.sh
	}
	in.Raw = ev.Payload
	in.Topic = ev.Envelope.Topic
	in.ClientID = ev.Envelope.ClientID
	in.Principal = ev.Envelope.Principal
	in.Thing = ev.Thing
	in.Timestamp = ev.Envelope.ReceivedAt / int64(time.Millisecond)
	in.Partition = ev.Partition
	in.Offset = ev.Offset
	if v, err := ev.JSON(); err == nil {
		in.Payload = v
	} else {
		in.Payload = rulesql.Undefined
	}
	return in
}

// Process implements processors.Processor: it routes the event to the
// rules whose topic filter matches and runs each. A rule that fails
// fires its error action, or sends the event to the DLQ; the others
// carry on. Only a state-store failure is returned.
func (p *Processor) Process(ctx context.Context, tx *processors.Tx, ev *processors.Event) error {
	l := p.cur.Load()
	ps := part(tx)
	ps.lastEvent = tx.Now()
	if len(l.set.Rules) == 0 || !routable(ev.Envelope.Type) {
		return nil
	}
	matched := l.set.Router.AppendMatch(ps.matched[:0], ev.Envelope.Topic)
	defer func() {
		clear(matched)
		ps.matched = matched[:0]
	}()
	if len(matched) == 0 {
		return nil
	}
	in := p.input(tx, ps, ev)
	st := ps.st.bind(tx)
	for _, r := range matched {
		if err := ctx.Err(); err != nil {
			return err
		}
		ri := l.infoOf(r)
		if !tx.DryRun() {
			ri.stats.matched.Add(1)
			ri.cMatched.Inc()
		}
		var err error
		switch {
		case r.Window != nil:
			err = p.windowEvent(tx, ps, ri, ev, in, st)
		case r.For != nil:
			err = p.durationEvent(tx, ps, ri, ev, in, st)
		default:
			err = p.plainEvent(tx, ps, ri, ev, in, st)
		}
		if err != nil {
			return fmt.Errorf("rule %s: %w", r.Name, err)
		}
	}
	return nil
}

// plainEvent runs a rule without window or duration.
func (p *Processor) plainEvent(tx *processors.Tx, ps *partState, ri *ruleInfo, ev *processors.Event, in *rulesql.Input, st *subStore) error {
	out, fired, err := ps.eval.Eval(ri.rule, in, st)
	if err != nil {
		return p.ruleError(tx, ri, ev, in, err)
	}
	if !fired || rulesql.IsUndefined(out) {
		return nil
	}
	if ri.rule.Stateful {
		if err := p.anomalies(tx, ri, in, out); err != nil {
			return err
		}
	}
	return p.fire(tx, ri, in, out, eventBase(ev.Partition, ev.Offset), in.Timestamp)
}

// eventBase is the first half of an event's idempotency keys.
func eventBase(partition int32, offset int64) string {
	b := make([]byte, 0, 24)
	b = strconv.AppendInt(b, int64(partition), 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, offset, 10)
	return string(b)
}

// Tick implements processors.Ticker: it fires the duration timers that
// are due and closes the windows of a partition that has gone quiet.
func (p *Processor) Tick(ctx context.Context, tx *processors.Tx, now time.Time) error {
	l := p.cur.Load()
	ps := part(tx)
	for _, ri := range l.duration {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := p.durationTick(tx, ps, ri, now); err != nil {
			return fmt.Errorf("rule %s: %w", ri.rule.Name, err)
		}
	}
	for _, ri := range l.windows {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := p.windowTick(tx, ps, ri, now); err != nil {
			return fmt.Errorf("rule %s: %w", ri.rule.Name, err)
		}
	}
	return nil
}
