package compile

import (
	"github.com/iotpipe/iotpipe/rulesql/ast"
	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

// Tri is a condition's outcome: true, false or Undefined (not a Boolean).
type Tri int8

// The outcomes of a Pred.
const (
	False Tri = iota
	True
	Unknown
)

// Pred is a compiled condition. WHERE clauses compile to a Pred so the
// common shapes (AND/OR/NOT of "attribute op number") run without boxing
// values into interfaces.
type Pred func(c *env.Ctx) Tri

// triOf converts a value as AND/OR do.
func triOf(v any) Tri {
	if b, ok := v.(bool); ok {
		if b {
			return True
		}
		return False
	}
	b, ok := value.ToBool(v)
	switch {
	case !ok:
		return Unknown
	case b:
		return True
	}
	return False
}

// pred compiles a condition.
func (k *compiler) pred(e ast.Expr) (Pred, error) {
	switch t := e.(type) {
	case *ast.Binary:
		switch t.Op {
		case "AND", "OR":
			l, err := k.pred(t.L)
			if err != nil {
				return nil, err
			}
			r, err := k.pred(t.R)
			if err != nil {
				return nil, err
			}
			if t.Op == "AND" {
				return func(c *env.Ctx) Tri {
					a := l(c)
					if a == False {
						return False
					}
					b := r(c)
					if b == False {
						return False
					}
					if a == True && b == True {
						return True
					}
					return Unknown
				}, nil
			}
			return func(c *env.Ctx) Tri {
				a := l(c)
				if a == True {
					return True
				}
				b := r(c)
				if b == True {
					return True
				}
				if a == False && b == False {
					return False
				}
				return Unknown
			}, nil
		case "<", "<=", ">", ">=":
			if p := k.attrCmpPred(t); p != nil {
				return p, nil
			}
		}
	case *ast.Unary:
		if t.Op == "NOT" {
			x, err := k.pred(t.X)
			if err != nil {
				return nil, err
			}
			return func(c *env.Ctx) Tri {
				switch x(c) {
				case True:
					return False
				case False:
					return True
				}
				return Unknown
			}, nil
		}
	}
	f, _, err := k.expr(e)
	if err != nil {
		return nil, err
	}
	return func(c *env.Ctx) Tri { return triOf(f(c)) }, nil
}

// attrCmpPred compiles "attribute op number" into one lookup and one
// float comparison; nil when e has another shape.
func (k *compiler) attrCmpPred(t *ast.Binary) Pred {
	id, ok := t.L.(*ast.Ident)
	if !ok || k.inWhere && hasKey(k.aliases, id.Name) {
		return nil
	}
	lit, ok := t.R.(*ast.Literal)
	if !ok {
		return nil
	}
	var kf float64
	switch n := lit.Value.(type) {
	case int64:
		if n > 1<<53 || n < -(1<<53) {
			return nil
		}
		kf = float64(n)
	case float64:
		kf = n
	default:
		return nil
	}
	name := id.Name
	op := binOps[t.Op]
	k0 := lit.Value
	var cmp func(x float64) bool
	switch op {
	case value.OpGt:
		cmp = func(x float64) bool { return x > kf }
	case value.OpGe:
		cmp = func(x float64) bool { return x >= kf }
	case value.OpLt:
		cmp = func(x float64) bool { return x < kf }
	default:
		cmp = func(x float64) bool { return x <= kf }
	}
	slow := func(v any) Tri { return triOf(value.Compare(op, v, k0)) }
	// One closure per operator keeps the comparison inlined.
	switch op {
	case value.OpGt:
		return func(c *env.Ctx) Tri {
			m, ok := c.Doc.(map[string]any)
			if !ok {
				return Unknown
			}
			switch x := m[name].(type) {
			case float64:
				return boolTri(x > kf)
			case int64:
				return boolTri(float64(x) > kf)
			case nil:
				if _, present := m[name]; !present {
					return Unknown
				}
				return slow(nil)
			default:
				return slow(x)
			}
		}
	case value.OpLt:
		return func(c *env.Ctx) Tri {
			m, ok := c.Doc.(map[string]any)
			if !ok {
				return Unknown
			}
			switch x := m[name].(type) {
			case float64:
				return boolTri(x < kf)
			case int64:
				return boolTri(float64(x) < kf)
			case nil:
				if _, present := m[name]; !present {
					return Unknown
				}
				return slow(nil)
			default:
				return slow(x)
			}
		}
	}
	return func(c *env.Ctx) Tri {
		m, ok := c.Doc.(map[string]any)
		if !ok {
			return Unknown
		}
		v, present := m[name]
		if !present {
			return Unknown
		}
		switch x := v.(type) {
		case float64:
			return boolTri(cmp(x))
		case int64:
			return boolTri(cmp(float64(x)))
		}
		return slow(v)
	}
}

func boolTri(b bool) Tri {
	if b {
		return True
	}
	return False
}
