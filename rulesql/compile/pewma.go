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
	b := make([]byte, 0, len(rule)+len(thing)+16)
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
func (k *compiler) pewma(t *ast.Call) (Fn, bool, error) {
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
		key := PewmaKey(c.Rule, site, c.In.Thing)
		var st pewma.State
		b, found, err := c.St.Get(key)
		if err == nil && found {
			err = st.UnmarshalBinary(b)
		}
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
		nb, err := st.MarshalBinary()
		if err == nil {
			err = c.St.Set(key, nb)
		}
		if err != nil && c.Err == nil {
			c.Err = fmt.Errorf("pewma(): write state: %w", err)
		}
		return map[string]any{
			"mean": r.Mean, "std": r.Std, "z": r.Z, "probability": r.Probability,
			"anomaly": r.Anomaly, "lower": r.Lower, "upper": r.Upper, "t": st.T,
		}
	}, false, nil
}
