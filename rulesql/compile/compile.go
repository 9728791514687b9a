// Package compile turns checked syntax trees into trees of typed Go
// closures. Each node becomes one closure over its children, built once;
// evaluating a rule then costs only the closure calls and map lookups,
// with AWS's Undefined carried as a plain sentinel value (no reflection,
// no parsing per event).
package compile

import (
	"fmt"
	"strings"

	"github.com/iotpipe/iotpipe/rulesql/ast"
	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/funcs"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

// Fn is a compiled expression.
type Fn func(c *env.Ctx) any

// Error is a compile error at a source position.
type Error struct {
	Pos ast.Pos
	Msg string
}

// Error formats the error as line:col: message.
func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Pos, e.Msg) }

func errorf(p ast.Pos, format string, args ...any) error {
	return &Error{p, fmt.Sprintf(format, args...)}
}

// AggregateNames are the aggregate functions of GROUP BY rules.
var aggregateNames = map[string]bool{
	"count": true, "sum": true, "avg": true, "min": true, "max": true,
	"first": true, "last": true, "stddev": true, "percentile": true,
}

// IsAggregate reports whether name (any case) is an aggregate function.
func IsAggregate(name string) bool { return aggregateNames[strings.ToLower(name)] }

// compiler holds what one rule's compilation shares between expressions.
type compiler struct {
	rule string
	// grouped is set for GROUP BY rules: aggregate calls become slots.
	grouped bool
	// aggs collects the aggregate calls in SELECT order.
	aggs []Aggregate
	// inAgg is set while compiling an aggregate's argument.
	inAgg bool
	// stateful counts stateful call sites (pewma).
	stateful int
	// aliases maps a SELECT alias to its slot for WHERE (only aliases of
	// stateful items).
	aliases map[string]int
	// inWhere is set while compiling the WHERE clause.
	inWhere bool
}

// constFn returns a closure that returns v.
func constFn(v any) Fn { return func(*env.Ctx) any { return v } }

// expr compiles e; the bool reports whether e is a constant (then the
// closure returns the folded value).
func (k *compiler) expr(e ast.Expr) (Fn, bool, error) {
	switch t := e.(type) {
	case *ast.Literal:
		return constFn(t.Value), true, nil
	case *ast.Ident:
		if k.inWhere {
			if slot, ok := k.aliases[t.Name]; ok {
				return func(c *env.Ctx) any {
					if slot < len(c.Slots) {
						return slotValue(c, slot)
					}
					return value.Undefined
				}, false, nil
			}
		}
		name := t.Name
		return func(c *env.Ctx) any {
			if m, ok := c.Doc.(map[string]any); ok {
				if v, ok := m[name]; ok {
					return v
				}
			}
			return value.Undefined
		}, false, nil
	case *ast.Star:
		return func(c *env.Ctx) any {
			if value.IsUndefined(c.Doc) && c.In != nil && c.In.Raw != nil {
				return c.In.Raw
			}
			return c.Doc
		}, false, nil
	case *ast.Field:
		return k.field(t)
	case *ast.Index:
		x, _, err := k.expr(t.X)
		if err != nil {
			return nil, false, err
		}
		i, _, err := k.expr(t.Index)
		if err != nil {
			return nil, false, err
		}
		return func(c *env.Ctx) any { return index(x(c), i(c)) }, false, nil
	case *ast.Unary:
		x, isConst, err := k.expr(t.X)
		if err != nil {
			return nil, false, err
		}
		var f Fn
		if t.Op == "NOT" {
			f = func(c *env.Ctx) any { return value.Not(x(c)) }
		} else {
			f = func(c *env.Ctx) any { return value.Neg(x(c)) }
		}
		return fold(f, isConst)
	case *ast.Binary:
		return k.binary(t)
	case *ast.Call:
		return k.call(t)
	case *ast.Cast:
		target, err := funcs.CastTarget(t.Type)
		if err != nil {
			return nil, false, errorf(t.P, "%v", err)
		}
		x, isConst, err := k.expr(t.X)
		if err != nil {
			return nil, false, err
		}
		return fold(func(c *env.Ctx) any { return funcs.Cast(x(c), target) }, isConst)
	case *ast.Case:
		return k.caseExpr(t)
	case *ast.Array:
		elems := make([]Fn, len(t.Elems))
		all := true
		for i, x := range t.Elems {
			f, isConst, err := k.expr(x)
			if err != nil {
				return nil, false, err
			}
			elems[i], all = f, all && isConst
		}
		f := func(c *env.Ctx) any {
			out := make([]any, 0, len(elems))
			for _, e := range elems {
				if v := e(c); !value.IsUndefined(v) {
					out = append(out, v)
				}
			}
			return out
		}
		// Arrays are mutable once handed out, so never fold them.
		return f, false, nil
	case *ast.Object:
		vals := make([]Fn, len(t.Values))
		for i, x := range t.Values {
			f, _, err := k.expr(x)
			if err != nil {
				return nil, false, err
			}
			vals[i] = f
		}
		keys := t.Keys
		return func(c *env.Ctx) any {
			out := make(map[string]any, len(keys))
			for i, kk := range keys {
				if v := vals[i](c); !value.IsUndefined(v) {
					out[kk] = v
				}
			}
			return out
		}, false, nil
	case *ast.SubSelect:
		return k.subSelect(t)
	case *ast.Interval:
		return nil, false, errorf(t.P, "INTERVAL is only valid in a GROUP BY window")
	}
	return nil, false, errorf(e.Position(), "unsupported expression %T", e)
}

// fold evaluates a constant expression once.
func fold(f Fn, isConst bool) (Fn, bool, error) {
	if !isConst {
		return f, false, nil
	}
	v := f(&env.Ctx{In: &env.Input{}, Doc: value.Undefined})
	return constFn(v), true, nil
}

// field compiles a.b.c; a path rooted at an identifier becomes one loop
// over maps.
func (k *compiler) field(t *ast.Field) (Fn, bool, error) {
	var path []string
	var e ast.Expr = t
	for {
		f, ok := e.(*ast.Field)
		if !ok {
			break
		}
		path = append(path, f.Name)
		e = f.X
	}
	for i, j := 0, len(path)-1; i < j; i, j = i+1, j-1 {
		path[i], path[j] = path[j], path[i]
	}
	if id, ok := e.(*ast.Ident); ok && !(k.inWhere && hasKey(k.aliases, id.Name)) {
		full := append([]string{id.Name}, path...)
		if len(full) == 2 {
			a, b := full[0], full[1]
			return func(c *env.Ctx) any {
				if m, ok := c.Doc.(map[string]any); ok {
					if m2, ok := m[a].(map[string]any); ok {
						if v, ok := m2[b]; ok {
							return v
						}
					}
				}
				return value.Undefined
			}, false, nil
		}
		return func(c *env.Ctx) any { return lookup(c.Doc, full) }, false, nil
	}
	x, _, err := k.expr(e)
	if err != nil {
		return nil, false, err
	}
	if id, ok := e.(*ast.Ident); ok && k.inWhere && hasKey(k.aliases, id.Name) {
		// A field of a stateful item's alias: read without building
		// the item's object when it has not been built.
		slot := k.aliases[id.Name]
		return func(c *env.Ctx) any {
			if slot < len(c.Slots) {
				if l, ok := c.Slots[slot].(lazyObject); ok {
					v, ok := l.field(path[0])
					if !ok {
						return value.Undefined
					}
					return lookup(v, path[1:])
				}
			}
			return lookup(x(c), path)
		}, false, nil
	}
	return func(c *env.Ctx) any { return lookup(x(c), path) }, false, nil
}

// lazyObject is an item's value not yet built as an object: WHERE reads
// its fields (field), and everywhere else it is the object (object),
// built once (slotValue).
type lazyObject interface {
	field(name string) (any, bool)
	object() any
}

// slotValue returns the value of SELECT item slot, building it first
// when it is a lazyObject.
func slotValue(c *env.Ctx, slot int) any {
	v := c.Slots[slot]
	if l, ok := v.(lazyObject); ok {
		v = l.object()
		c.Slots[slot] = v
	}
	return v
}

func hasKey(m map[string]int, k string) bool {
	_, ok := m[k]
	return ok
}

// lookup follows path through nested objects.
func lookup(v any, path []string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return value.Undefined
		}
		if v, ok = m[p]; !ok {
			return value.Undefined
		}
	}
	return v
}

// index is x[i]: an Array by Int index, an Object by String key.
func index(x, i any) any {
	switch t := x.(type) {
	case []any:
		n, ok := value.ToInt(i)
		if !ok || n < 0 || n >= int64(len(t)) {
			return value.Undefined
		}
		return t[n]
	case map[string]any:
		s, ok := i.(string)
		if !ok {
			return value.Undefined
		}
		if v, ok := t[s]; ok {
			return v
		}
	}
	return value.Undefined
}

var binOps = map[string]value.Op{
	"+": value.OpAdd, "-": value.OpSub, "*": value.OpMul, "/": value.OpDiv, "%": value.OpMod,
	"=": value.OpEq, "<>": value.OpNe, "<": value.OpLt, "<=": value.OpLe, ">": value.OpGt, ">=": value.OpGe,
	"AND": value.OpAnd, "OR": value.OpOr,
}

func (k *compiler) binary(t *ast.Binary) (Fn, bool, error) {
	l, lc, err := k.expr(t.L)
	if err != nil {
		return nil, false, err
	}
	r, rc, err := k.expr(t.R)
	if err != nil {
		return nil, false, err
	}
	op, ok := binOps[t.Op]
	if !ok {
		return nil, false, errorf(t.P, "unknown operator %s", t.Op)
	}
	var f Fn
	switch op {
	case value.OpAnd:
		// SQL three-valued logic: false wins over Undefined, so the right
		// side is skipped when the left is false.
		f = func(c *env.Ctx) any {
			lv := l(c)
			if b, isBool := lv.(bool); isBool && !b {
				return false
			}
			a, ok1 := value.ToBool(lv)
			if ok1 && !a {
				return false
			}
			rv := r(c)
			if b, isBool := rv.(bool); isBool && a && ok1 {
				return b
			}
			b, ok2 := value.ToBool(rv)
			if ok2 && !b {
				return false
			}
			if ok1 && ok2 {
				return true
			}
			return value.Undefined
		}
	case value.OpOr:
		f = func(c *env.Ctx) any {
			a, ok1 := value.ToBool(l(c))
			if ok1 && a {
				return true
			}
			b, ok2 := value.ToBool(r(c))
			if ok2 && b {
				return true
			}
			if ok1 && ok2 {
				return false
			}
			return value.Undefined
		}
	case value.OpLt, value.OpLe, value.OpGt, value.OpGe:
		if rc && !lc {
			if id, ok := t.L.(*ast.Ident); ok && !(k.inWhere && hasKey(k.aliases, id.Name)) {
				// Fuse the attribute lookup into the comparison.
				name := id.Name
				l = func(c *env.Ctx) any {
					if m, ok := c.Doc.(map[string]any); ok {
						if v, ok := m[name]; ok {
							return v
						}
					}
					return value.Undefined
				}
				if fast := cmpAttrConst(op, name, r(nil)); fast != nil {
					return fast, false, nil
				}
			}
			if fast := cmpConst(op, l, r(nil)); fast != nil {
				return fast, false, nil
			}
		}
		f = func(c *env.Ctx) any { return value.Compare(op, l(c), r(c)) }
	default:
		f = func(c *env.Ctx) any { return value.Binary(op, l(c), r(c)) }
	}
	return fold(f, lc && rc)
}

func (k *compiler) caseExpr(t *ast.Case) (Fn, bool, error) {
	var subj Fn
	if t.Subject != nil {
		f, _, err := k.expr(t.Subject)
		if err != nil {
			return nil, false, err
		}
		subj = f
	}
	conds := make([]Fn, len(t.Whens))
	thens := make([]Fn, len(t.Whens))
	for i, w := range t.Whens {
		var err error
		if conds[i], _, err = k.expr(w.Cond); err != nil {
			return nil, false, err
		}
		if thens[i], _, err = k.expr(w.Then); err != nil {
			return nil, false, err
		}
	}
	els := constFn(value.Undefined)
	if t.Else != nil {
		f, _, err := k.expr(t.Else)
		if err != nil {
			return nil, false, err
		}
		els = f
	}
	if subj != nil {
		return func(c *env.Ctx) any {
			s := subj(c)
			if !value.IsUndefined(s) {
				for i, cond := range conds {
					w := cond(c)
					if !value.IsUndefined(w) && value.DeepEqual(s, w) {
						return thens[i](c)
					}
				}
			}
			return els(c)
		}, false, nil
	}
	return func(c *env.Ctx) any {
		for i, cond := range conds {
			if value.Truthy(cond(c)) {
				return thens[i](c)
			}
		}
		return els(c)
	}, false, nil
}

func (k *compiler) call(t *ast.Call) (Fn, bool, error) {
	name := strings.ToLower(t.Name)
	if IsAggregate(name) {
		return k.aggregate(t)
	}
	if name == "pewma" {
		return k.pewma(t, false)
	}
	f, ok := funcs.Lookup(t.Name)
	if !ok {
		return nil, false, errorf(t.P, "unknown function %s", t.Name)
	}
	if t.Star {
		return nil, false, errorf(t.P, "%s(*) is not allowed; only count(*)", f.Name)
	}
	if len(t.Args) < f.Min || f.Max >= 0 && len(t.Args) > f.Max {
		return nil, false, errorf(t.P, "%s takes %s, got %d", f.Name, arity(f), len(t.Args))
	}
	args := make([]Fn, len(t.Args))
	consts := make([]funcs.Const, len(t.Args))
	allConst := !f.Volatile
	for i, a := range t.Args {
		fn, isConst, err := k.expr(a)
		if err != nil {
			return nil, false, err
		}
		args[i] = fn
		if isConst {
			consts[i] = funcs.Const{Value: fn(nil), OK: true}
		}
		allConst = allConst && isConst
	}
	impl := f.Impl
	if f.Prepare != nil {
		p, err := f.Prepare(consts)
		if err != nil {
			return nil, false, errorf(t.P, "%s: %v", f.Name, err)
		}
		if p != nil {
			impl = p
		}
	}
	// Hot context functions get closures without an argument slice.
	switch name {
	case "topic":
		if len(args) == 1 && consts[0].OK {
			n, ok := value.ToInt(consts[0].Value)
			if !ok {
				return nil, false, errorf(t.P, "topic(n) needs an Int level")
			}
			return func(c *env.Ctx) any {
				// The level as a value is made once per event.
				if v, ok := c.In.Level(n); ok {
					return v
				}
				s, ok := funcs.TopicLevel(c.In.Topic, n)
				if !ok {
					return value.Undefined
				}
				var v any = s
				c.In.KeepLevel(n, v)
				return v
			}, false, nil
		}
	case "clientid":
		return func(c *env.Ctx) any { return c.In.ClientID }, false, nil
	case "timestamp":
		return func(c *env.Ctx) any { return c.In.Timestamp }, false, nil
	case "encode":
		if _, star := t.Args[0].(*ast.Star); star {
			// encode(*, ...) encodes the payload bytes as received.
			rest := args[1]
			return func(c *env.Ctx) any {
				var v any = c.In.Raw
				if c.In.Raw == nil {
					v = c.Doc
				}
				return impl(c, []any{v, rest(c)})
			}, false, nil
		}
	}
	var fn Fn
	switch len(args) {
	case 0:
		fn = func(c *env.Ctx) any { return impl(c, nil) }
	case 1:
		a0 := args[0]
		fn = func(c *env.Ctx) any {
			v := a0(c)
			if value.IsUndefined(v) && !takesUndefined(name) {
				return value.Undefined
			}
			vals := c.PushArgs(1)
			vals[0] = v
			out := impl(c, vals)
			c.PopArgs(vals)
			return out
		}
	default:
		fn = func(c *env.Ctx) any {
			vals := c.PushArgs(len(args))
			defer c.PopArgs(vals)
			for i, a := range args {
				vals[i] = a(c)
				if value.IsUndefined(vals[i]) && !takesUndefined(name) {
					return value.Undefined
				}
			}
			return impl(c, vals)
		}
	}
	return fold(fn, allConst)
}

func arity(f *funcs.Func) string {
	switch {
	case f.Max < 0:
		return fmt.Sprintf("at least %d arguments", f.Min)
	case f.Min == f.Max:
		if f.Min == 1 {
			return "1 argument"
		}
		return fmt.Sprintf("%d arguments", f.Min)
	}
	return fmt.Sprintf("%d to %d arguments", f.Min, f.Max)
}

// takesUndefined reports the functions that are defined for Undefined
// arguments; every other function gives Undefined for them.
func takesUndefined(name string) bool {
	switch name {
	case "isundefined", "isnull", "nanvl":
		return true
	}
	return false
}
