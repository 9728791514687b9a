package compile

import (
	"fmt"
	"strconv"

	"github.com/iotpipe/iotpipe/rulesql/ast"
	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/pewma"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

// PewmaKey is the state key of one pewma() call site for one thing.
func PewmaKey(rule string, site int, thing string) []byte {
	return appendPewmaKey(make([]byte, 0, len(rule)+len(thing)+16), rule, site, thing)
}

func appendPewmaKey(b []byte, rule string, site int, thing string) []byte {
	b = append(b, "pewma\x00"...)
	b = append(b, rule...)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(site), 10)
	b = append(b, 0)
	return append(b, thing...)
}

// pewma compiles pewma(expr [, alpha0, beta, T, threshold]): it scores
// the value against the (rule, call site, thing) detector kept in the
// state store, updates it, and returns {mean, std, z, probability,
// anomaly, lower, upper, t}. A value that is not a finite number leaves
// the state alone and gives Undefined.
//
// With lazy set (a SELECT item that is the call itself) the closure
// returns the result as a *pewmaOut, which WHERE reads fields of
// without building the object (see lazyObject).
func (k *compiler) pewma(t *ast.Call, lazy bool) (Fn, bool, error) {
	if k.inWhere || k.inAgg {
		return nil, false, errorf(t.P, "pewma() is only allowed in SELECT; refer to its alias in WHERE (SELECT pewma(x) AS a ... WHERE a.anomaly)")
	}
	if len(t.Args) < 1 || len(t.Args) > 5 {
		return nil, false, errorf(t.P, "pewma takes 1 to 5 arguments (value [, alpha0, beta, T, threshold]), got %d", len(t.Args))
	}
	p := pewma.DefaultParams()
	for i, a := range t.Args[1:] {
		lit, ok := a.(*ast.Literal)
		var f float64
		if ok {
			f, ok = value.ToFloat(lit.Value)
		}
		if !ok {
			return nil, false, errorf(a.Position(), "pewma parameter %d must be a number literal", i+2)
		}
		switch i {
		case 0:
			p.Alpha0 = f
		case 1:
			p.Beta = f
		case 2:
			if f != float64(int(f)) {
				return nil, false, errorf(a.Position(), "pewma T must be a whole number")
			}
			p.T = int(f)
		case 3:
			p.Threshold = f
		}
	}
	if err := p.Validate(); err != nil {
		return nil, false, errorf(t.P, "%v", err)
	}
	x, _, err := k.expr(t.Args[0])
	if err != nil {
		return nil, false, err
	}
	site := k.stateful
	k.stateful++
	return func(c *env.Ctx) any {
		f, ok := value.ToFloat(x(c))
		if !ok {
			return value.Undefined
		}
		if c.St == nil {
			if c.Err == nil {
				c.Err = fmt.Errorf("pewma(): rule %s evaluated without a state store", c.Rule)
			}
			return value.Undefined
		}
		// The key, then the new state's value, in c.Buf: the store
		// copies both (env.State).
		c.Buf = appendPewmaKey(c.Buf[:0], c.Rule, site, c.In.Thing)
		st, kept, err := pewmaState(c.St, c.Buf)
		if err != nil {
			if c.Err == nil {
				c.Err = fmt.Errorf("pewma(): read state: %w", err)
			}
			return value.Undefined
		}
		r := st.Update(p, f)
		if r.Skipped {
			return value.Undefined
		}
		n := len(c.Buf)
		c.Buf, err = st.AppendBinary(c.Buf)
		key := c.Buf[:n:n]
		if err == nil {
			err = c.St.Set(key, c.Buf[n:])
		}
		if err != nil {
			if c.Err == nil {
				c.Err = fmt.Errorf("pewma(): write state: %w", err)
			}
			return value.Undefined
		}
		if kept != nil {
			*kept = st
		} else if m, ok := c.St.(env.Memo); ok {
			ns := new(pewma.State)
			*ns = st
			m.Keep(key, ns)
		}
		if lazy {
			// The site's result lives in the context until the
			// evaluation builds its object (see lazyObject).
			o := stashed[pewmaOut](c, site)
			*o = pewmaOut{r: r, t: st.T}
			return o
		}
		o := pewmaOut{r: r, t: st.T}
		return o.object()
	}, false, nil
}

// stashed returns the context's value of type T for a stateful call
// site, made on first use and kept with the context (env.Ctx.Stash): a
// closure's value that lives for one evaluation, without allocating it
// for each.
func stashed[T any](c *env.Ctx, site int) *T {
	if site >= len(c.Stash) {
		c.Stash = append(c.Stash, make([]any, site+1-len(c.Stash))...)
	}
	v, ok := c.Stash[site].(*T)
	if !ok {
		v = new(T)
		c.Stash[site] = v
	}
	return v
}

// pewmaOut is a pewma() result: {mean, std, z, probability, anomaly,
// lower, upper, t}.
type pewmaOut struct {
	r pewma.Result
	t int64
}

func (o *pewmaOut) field(name string) (any, bool) {
	switch name {
	case "mean":
		return o.r.Mean, true
	case "std":
		return o.r.Std, true
	case "z":
		return o.r.Z, true
	case "probability":
		return o.r.Probability, true
	case "anomaly":
		return o.r.Anomaly, true
	case "lower":
		return o.r.Lower, true
	case "upper":
		return o.r.Upper, true
	case "t":
		return o.t, true
	}
	return nil, false
}

func (o *pewmaOut) object() any {
	return map[string]any{
		"mean": o.r.Mean, "std": o.r.Std, "z": o.r.Z, "probability": o.r.Probability,
		"anomaly": o.r.Anomaly, "lower": o.r.Lower, "upper": o.r.Upper, "t": o.t,
	}
}

// pewmaState returns the detector state at key: the one st's memo kept
// (kept points to it), or the stored one decoded.
func pewmaState(st env.State, key []byte) (s pewma.State, kept *pewma.State, err error) {
	m, memo := st.(env.Memo)
	if memo {
		if v, ok := m.Recall(key); ok {
			if kept, ok = v.(*pewma.State); ok {
				return *kept, kept, nil
			}
		}
	}
	b, found, err := st.Get(key)
	if err == nil && found {
		err = s.UnmarshalBinary(b)
	}
	return s, nil, err
}
