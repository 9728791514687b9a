package rulesql

import (
	"github.com/iotpipe/iotpipe/rulesql/compile"
	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

// Eval runs the rule on one event: WHERE first (a WHERE that is not true,
// Undefined included, does not fire), then SELECT. The output is an
// object (map[string]any) without Undefined values, the bare value of a
// SELECT VALUE (possibly Undefined), or the raw bytes of a non-JSON
// payload for SELECT *. Rules with stateful calls (pewma) evaluate SELECT
// first, so their state advances on every matching event, and their
// WHERE may name a stateful item's alias. The error reports a failing
// state store or shadow reader; out and fired are still meaningful.
//
// For a GROUP BY rule Eval only tells whether the event passes WHERE; the
// output row comes from AggregateRow once its window closes.
func (r *Rule) Eval(in *Input, st State) (out any, fired bool, err error) {
	c, _ := r.ctxs.Get().(*env.Ctx)
	if c == nil {
		c = new(env.Ctx)
	}
	// The pooled context keeps its references until its next Reset (or
	// the pool drops it at a GC): a second Reset here cost as much.
	defer r.ctxs.Put(c)
	return r.eval(c, in, st)
}

func (r *Rule) eval(c *env.Ctx, in *Input, st State) (out any, fired bool, err error) {
	c.Reset(in, st, r.Name)
	q := r.query
	selectFirst(q, c)
	if q.WherePred != nil && q.WherePred(c) != compile.True {
		return value.Undefined, false, c.Err
	}
	if q.Window != nil {
		return value.Undefined, true, c.Err
	}
	out = q.Build(c)
	return out, true, c.Err
}

// Evaluator evaluates rules and expressions in a context of its own,
// reused from one evaluation to the next, instead of one taken from the
// rule's pool: for one goroutine at a time (a partition task's), which
// evaluates one rule or expression at a time. What it returns is the
// caller's, as Eval's is. The zero value is ready to use.
type Evaluator struct{ c env.Ctx }

// Eval is r.Eval(in, st) in e's context.
func (e *Evaluator) Eval(r *Rule, in *Input, st State) (out any, fired bool, err error) {
	return r.eval(&e.c, in, st)
}

// EvalProgram is p.Eval(in, st) in e's context.
func (e *Evaluator) EvalProgram(p *Program, in *Input, st State) (any, error) {
	return p.eval(&e.c, in, st)
}

// selectFirst evaluates the SELECT items of a rule whose items must be
// evaluated before WHERE (stateful ones) into c.Slots.
func selectFirst(q *compile.Query, c *env.Ctx) {
	if !q.SelectFirst {
		return
	}
	c.UseSlots(len(q.Items))
	for i, it := range q.Items {
		if !it.Star {
			c.Slots[i] = it.Fn(c)
		}
	}
}

// Condition evaluates only the WHERE clause (true when there is none).
// Duration rules (For) use it to track whether their condition holds.
// It must not be used on stateful rules, whose WHERE reads SELECT values:
// use Eval there.
func (r *Rule) Condition(in *Input, st State) (bool, error) {
	if r.query.WherePred == nil {
		return true, nil
	}
	c := &env.Ctx{In: in, Doc: in.Payload, St: st, Rule: r.Name}
	return r.query.WherePred(c) == compile.True, c.Err
}

// AggregateRow builds the output row of a GROUP BY rule from the finished
// aggregate values (in Aggregates order) and the event that closed the
// window or the last event of the group (for non-aggregate items such as
// keys and topic(n)).
func (r *Rule) AggregateRow(in *Input, aggs []any) any {
	c := &env.Ctx{In: in, Doc: in.Payload, Rule: r.Name, Aggs: aggs}
	return r.query.Build(c)
}

// ActionTargets renders every action of the rule for an event.
func (r *Rule) ActionTargets(in *Input) []RenderedAction {
	out := make([]RenderedAction, len(r.Actions))
	for i, a := range r.Actions {
		out[i] = RenderedAction{Type: a.Type, Params: a.Render(in)}
	}
	return out
}

// RenderedAction is an action with its templates evaluated.
type RenderedAction struct {
	Type   string         `json:"type"`
	Params map[string]any `json:"params"`
}
