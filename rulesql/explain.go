package rulesql

import (
	"github.com/iotpipe/iotpipe/rulesql/compile"
	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

// Explanation says why a rule did or did not fire on one event (the
// answer to "why didn't my rule fire?", iotpipe replay --trace).
type Explanation struct {
	// Where is the WHERE clause's value: true, false, Undefined or any
	// other value (only true fires); true for a rule without WHERE.
	Where any
	// Undefined names the attributes the WHERE clause reads that are
	// Undefined for this event, as written ("state.reported.open"), in
	// the order written.
	Undefined []string
	// Fired reports whether the rule fires on the event, as Eval's fired
	// does (for a FOR rule, whether its condition holds; for a GROUP BY
	// rule, whether the event enters its windows).
	Fired bool
	// Output is what Eval returns: the output when Fired (Undefined for
	// a GROUP BY rule, whose rows come when a window closes).
	Output any
	// Err is the evaluation failure Eval would return.
	Err error
}

// Explain evaluates the rule on an event as Eval does and says why it
// fires or not. Stateful functions (pewma) read and update st as Eval
// does: pass a throwaway copy to leave the real state as it is.
func (r *Rule) Explain(in *Input, st State) Explanation {
	c := &env.Ctx{In: in, Doc: in.Payload, St: st, Rule: r.Name}
	q := r.query
	selectFirst(q, c)
	e := Explanation{Where: true, Output: value.Undefined}
	if q.Where != nil {
		e.Where = q.Where(c)
		for _, a := range q.WhereAttrs {
			if value.IsUndefined(a.Fn(c)) {
				e.Undefined = append(e.Undefined, a.Path)
			}
		}
		if q.WherePred(c) != compile.True {
			e.Err = c.Err
			return e
		}
	}
	e.Fired = true
	if q.Window == nil {
		e.Output = q.Build(c)
	}
	e.Err = c.Err
	return e
}
