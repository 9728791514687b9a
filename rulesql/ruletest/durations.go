package ruletest

import (
	"slices"
	"strings"
	"time"

	"github.com/iotpipe/iotpipe/rulesql"
)

// TickInterval is the step in which time passes for FOR rules: as the
// stream processors' runtime ticks every second, an episode due by a
// whole second fires when the first event at or after that second comes
// (whatever its thing), before that event is evaluated. iotpipe replay
// ticks the same way, so both give the same outputs for the same events.
const TickInterval = time.Second

// TickAt returns the tick an event at ts (epoch ms) follows: ts rounded
// down to a whole TickInterval.
func TickAt(ts int64) int64 {
	iv := TickInterval.Milliseconds()
	t := ts / iv * iv
	if t > ts { // negative ts
		t -= iv
	}
	return t
}

// durations runs WHERE ... FOR rules as the rules processor does
// (processors/rules over processors/analytics/timer), on the events'
// timestamps: an episode starts at the first event of a thing at which
// the condition holds and is taken to hold until an event at which it
// does not. It fires once, at its deadline (start + duration), with the
// output of the last event at which the condition held (actions rendered
// against that event): at the first tick at or past the deadline, or at
// an event of its thing at or past it, whichever comes first (a
// condition first seen false after the deadline did hold for the
// duration). With RESOLVE, the event at which it stops holding after
// the firing sends the fired output again, resolved.
type durations struct {
	rules    []*rulesql.Rule // FOR rules, in load order
	episodes map[*rulesql.Rule]map[string]*episode
	ticked   int64 // the last tick, epoch ms
	started  bool
}

// episode is one thing's current episode of one rule.
type episode struct {
	since int64          // epoch ms of the first event at which the condition held
	last  *rulesql.Input // the last event at which it held
	out   any            // its output
	fired any            // the output it fired with, once it has (nil before)
}

func newDurations(set *rulesql.Set) *durations {
	d := &durations{episodes: map[*rulesql.Rule]map[string]*episode{}}
	for _, r := range set.Rules {
		if r.For != nil && r.Window == nil {
			d.rules = append(d.rules, r)
			d.episodes[r] = map[string]*episode{}
		}
	}
	return d
}

// tick lets time pass up to the tick an event at ts follows, and returns
// what fires meanwhile: per rule in load order, the due episodes by
// deadline, then thing.
func (d *durations) tick(ts int64) []Output {
	t := TickAt(ts)
	if d.started && t <= d.ticked {
		return nil
	}
	d.started, d.ticked = true, t
	var out []Output
	for _, r := range d.rules {
		type due struct {
			thing string
			ep    *episode
		}
		var dues []due
		for thing, ep := range d.episodes[r] {
			if ep.fired == nil && ep.since+r.For.Duration.Milliseconds() <= t {
				dues = append(dues, due{thing, ep})
			}
		}
		slices.SortFunc(dues, func(a, b due) int {
			if a.ep.since != b.ep.since {
				return int(min(max(a.ep.since-b.ep.since, -1), 1))
			}
			return strings.Compare(a.thing, b.thing)
		})
		for _, x := range dues {
			out = append(out, fire(r, x.ep))
		}
	}
	return out
}

// observe records whether the rule's condition holds for the event in
// (with its output out) and returns what fires or resolves at it.
func (d *durations) observe(r *rulesql.Rule, in *rulesql.Input, holds bool, out any) []Output {
	eps := d.episodes[r]
	ep := eps[in.Thing]
	if ep == nil {
		if holds {
			eps[in.Thing] = &episode{since: in.Timestamp, last: in, out: out}
		}
		return nil
	}
	if holds {
		ep.last, ep.out = in, out
	}
	if in.Timestamp < ep.since {
		return nil // older than the episode: the timer ignores it
	}
	var res []Output
	if ep.fired == nil && in.Timestamp >= ep.since+r.For.Duration.Milliseconds() {
		res = append(res, fire(r, ep))
	}
	if holds {
		return res
	}
	delete(eps, in.Thing)
	if ep.fired != nil && r.For.Resolve {
		o := Output{Rule: r.Name, Output: ep.fired, Resolved: true}
		if len(r.Actions) > 0 {
			o.Actions = r.ActionTargets(in)
		}
		res = append(res, o)
	}
	return res
}

// fire marks ep fired and returns its output.
func fire(r *rulesql.Rule, ep *episode) Output {
	ep.fired = ep.out
	if ep.fired == nil {
		ep.fired = map[string]any{}
	}
	o := Output{Rule: r.Name, Output: ep.fired}
	if len(r.Actions) > 0 {
		o.Actions = r.ActionTargets(ep.last)
	}
	return o
}
