package compile

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/iotpipe/iotpipe/rulesql/ast"
	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

// Item is one compiled SELECT item.
type Item struct {
	// Star is set for "*": the current document's attributes.
	Star bool
	// Fn computes the item; Path is its output key (nested for a dotted
	// alias).
	Fn   Fn
	Path []string
	// Stateful is set when the item calls a stateful function.
	Stateful bool
}

// Aggregate is one aggregate call of a GROUP BY rule.
type Aggregate struct {
	// Func is count, sum, avg, min, max, first, last, stddev or percentile.
	Func string
	// Arg computes the aggregated value from an event; nil for count(*).
	Arg Fn
	// Param is percentile's p as a fraction in 0..1 (percentile(x, 95) and
	// percentile(x, 0.95) both give 0.95), else 0.
	Param float64
	// ArgKey identifies Arg's expression when it is made of attributes,
	// literals, operators and casts only: two arguments with the same
	// non-empty ArgKey have the same value for every event. It is ""
	// for count(*) and for arguments that call functions.
	ArgKey string
}

// argKey returns a key of e's structure (positions left out), and false
// when e has a node argKey does not describe (calls, CASE, arrays,
// objects, nested SELECTs).
func argKey(e ast.Expr) (string, bool) {
	var b strings.Builder
	var walk func(e ast.Expr) bool
	walk = func(e ast.Expr) bool {
		switch t := e.(type) {
		case *ast.Literal:
			fmt.Fprintf(&b, "L%T:%#v", t.Value, t.Value)
		case *ast.Ident:
			fmt.Fprintf(&b, "I%q", t.Name)
		case *ast.Field:
			b.WriteString("F(")
			if !walk(t.X) {
				return false
			}
			fmt.Fprintf(&b, ".%q)", t.Name)
		case *ast.Index:
			b.WriteString("X(")
			if !walk(t.X) {
				return false
			}
			b.WriteString("[")
			if !walk(t.Index) {
				return false
			}
			b.WriteString("])")
		case *ast.Unary:
			fmt.Fprintf(&b, "U%q(", t.Op)
			if !walk(t.X) {
				return false
			}
			b.WriteString(")")
		case *ast.Binary:
			b.WriteString("B(")
			if !walk(t.L) {
				return false
			}
			fmt.Fprintf(&b, " %q ", t.Op)
			if !walk(t.R) {
				return false
			}
			b.WriteString(")")
		case *ast.Cast:
			b.WriteString("C(")
			if !walk(t.X) {
				return false
			}
			fmt.Fprintf(&b, " %q)", t.Type)
		default:
			return false
		}
		return true
	}
	if !walk(e) {
		return "", false
	}
	return b.String(), true
}

// Window is the GROUP BY window of a rule.
type Window struct {
	// Kind is "tumbling" or "hopping".
	Kind string
	// Size is the window length; Slide the hop (equal to Size when
	// tumbling).
	Size, Slide time.Duration
	// Lateness is the allowed lateness after the watermark passes a
	// window's end.
	Lateness time.Duration
}

// Query is a compiled top-level SELECT.
type Query struct {
	Value bool
	Items []Item
	// Where is nil when the rule has no WHERE; WherePred is the same
	// condition compiled as a predicate (what Eval runs).
	Where     Fn
	WherePred Pred
	// WhereAttrs are the attributes the WHERE clause reads, in the order
	// written (each once), to say which were Undefined (Rule.Explain).
	WhereAttrs []Attr
	// SelectFirst is set when SELECT items must be evaluated before WHERE
	// (stateful items, referenced by alias from WHERE or not, are updated
	// for every matching event).
	SelectFirst bool
	// Aggregates, Window, Keys and EventTime describe a GROUP BY rule.
	Aggregates []Aggregate
	Window     *Window
	Keys       []Fn
	EventTime  Fn
	// Stateful is the number of stateful call sites.
	Stateful int
}

// Attr is an attribute an expression reads: a name or a dotted path
// from the payload, or from a stateful item's alias in WHERE.
type Attr struct {
	// Path is the attribute as written ("state.reported.open").
	Path string
	// Fn reads it.
	Fn Fn
}

// attrs returns the attributes e reads, each once, in the order written.
// Attributes inside a nested SELECT (those of its elements) are left
// out.
func (k *compiler) attrs(e ast.Expr) ([]Attr, error) {
	var out []Attr
	seen := map[string]bool{}
	var err error
	ast.Walk(e, func(x ast.Expr) bool {
		if _, nested := x.(*ast.SubSelect); nested || err != nil {
			return false
		}
		path, ok := attrPath(x)
		if !ok {
			return true
		}
		if !seen[path] {
			seen[path] = true
			var f Fn
			f, _, err = k.expr(x)
			out = append(out, Attr{Path: path, Fn: f})
		}
		return false
	})
	return out, err
}

// attrPath returns the dotted path of a name or a field chain rooted at
// a name; ok is false for anything else.
func attrPath(e ast.Expr) (path string, ok bool) {
	switch t := e.(type) {
	case *ast.Ident:
		return t.Name, true
	case *ast.Field:
		p, ok := attrPath(t.X)
		return p + "." + t.Name, ok
	}
	return "", false
}

// Options are the compiler's inputs besides the syntax tree.
type Options struct {
	// Rule is the rule's name: it keys the state of stateful functions.
	Rule string
}

// Select compiles a top-level SELECT.
func Select(s *ast.Select, o Options) (*Query, error) {
	k := &compiler{rule: o.Rule, grouped: s.GroupBy != nil, aliases: map[string]int{}}
	q := &Query{Value: s.Value}
	for i, it := range s.Items {
		item, err := k.item(it, i)
		if err != nil {
			return nil, err
		}
		if item.Stateful {
			q.SelectFirst = true
			if len(it.Alias) == 1 {
				k.aliases[it.Alias[0]] = i
			}
		}
		q.Items = append(q.Items, item)
	}
	q.Aggregates = k.aggs
	if s.Where != nil {
		k.inWhere = true
		w, _, err := k.expr(s.Where)
		if err != nil {
			return nil, err
		}
		p, err := k.pred(s.Where)
		if err != nil {
			return nil, err
		}
		attrs, err := k.attrs(s.Where)
		k.inWhere = false
		if err != nil {
			return nil, err
		}
		q.Where, q.WherePred, q.WhereAttrs = w, p, attrs
	}
	if g := s.GroupBy; g != nil {
		q.Window = &Window{Kind: g.Window, Size: g.Size, Slide: g.Slide, Lateness: g.Lateness}
		for _, e := range g.Keys {
			f, _, err := k.expr(e)
			if err != nil {
				return nil, err
			}
			q.Keys = append(q.Keys, f)
		}
		if g.EventTime != nil {
			f, _, err := k.expr(g.EventTime)
			if err != nil {
				return nil, err
			}
			q.EventTime = f
		}
	}
	q.Stateful = k.stateful
	return q, nil
}

// Expr compiles a standalone expression (a substitution template's
// ${...}) for rule.
func Expr(e ast.Expr, rule string) (Fn, error) {
	k := &compiler{rule: rule}
	f, _, err := k.expr(e)
	return f, err
}

func (k *compiler) item(it *ast.SelectItem, i int) (Item, error) {
	if it.Star {
		return Item{Star: true}, nil
	}
	before := k.stateful
	var f Fn
	var err error
	if call, ok := it.Expr.(*ast.Call); ok && strings.EqualFold(call.Name, "pewma") {
		// The item's value is read from its slot only (see lazyObject).
		f, _, err = k.pewma(call, true)
	} else {
		f, _, err = k.expr(it.Expr)
	}
	if err != nil {
		return Item{}, err
	}
	path := it.Alias
	if len(path) == 0 {
		path = []string{defaultName(it.Expr, i)}
	}
	return Item{Fn: f, Path: path, Stateful: k.stateful > before}, nil
}

// defaultName is the output key of an item without AS: the attribute's
// name for a path, the function's name for a call, else _<position>.
func defaultName(e ast.Expr, i int) string {
	switch t := e.(type) {
	case *ast.Ident:
		return t.Name
	case *ast.Field:
		return t.Name
	case *ast.Call:
		return t.Name
	case *ast.Cast:
		return "cast"
	}
	return "_" + strconv.Itoa(i+1)
}

// Build evaluates the items and assembles the output for the current
// document: an object, or the bare value for SELECT VALUE. Slot values
// computed earlier (SelectFirst) are reused.
func (q *Query) Build(c *env.Ctx) any {
	return build(c, q.Value, q.Items)
}

func build(c *env.Ctx, isValue bool, items []Item) any {
	get := func(i int) any {
		if len(c.Slots) == len(items) {
			return slotValue(c, i)
		}
		v := items[i].Fn(c)
		if l, ok := v.(lazyObject); ok {
			v = l.object()
		}
		return v
	}
	if isValue {
		return get(0)
	}
	if len(items) == 1 && items[0].Star {
		return starDoc(c)
	}
	out := make(map[string]any, len(items)+4)
	for i, it := range items {
		if it.Star {
			if m, ok := c.Doc.(map[string]any); ok {
				for k, v := range m {
					out[k] = v
				}
			}
			continue
		}
		v := get(i)
		if value.IsUndefined(v) {
			continue
		}
		setPath(out, it.Path, v)
	}
	return out
}

// starDoc is the output of SELECT *: a copy of an object payload (so an
// action may change it), the raw bytes of a non-JSON payload.
func starDoc(c *env.Ctx) any {
	switch t := c.Doc.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, v := range t {
			out[k] = v
		}
		return out
	case value.UndefinedType:
		if c.In != nil && c.In.Raw != nil {
			return c.In.Raw
		}
	}
	return c.Doc
}

func setPath(out map[string]any, path []string, v any) {
	for _, p := range path[:len(path)-1] {
		m, ok := out[p].(map[string]any)
		if !ok {
			m = map[string]any{}
			out[p] = m
		}
		out = m
	}
	out[path[len(path)-1]] = v
}

// subSelect compiles a nested SELECT: it runs over each element of its
// FROM value (an object counts as one element) and gives an Array.
func (k *compiler) subSelect(t *ast.SubSelect) (Fn, bool, error) {
	s := t.Select
	if s.GroupBy != nil || s.For != nil {
		return nil, false, errorf(t.P, "GROUP BY and FOR are not allowed in a nested SELECT")
	}
	inWhere := k.inWhere
	k.inWhere = false
	defer func() { k.inWhere = inWhere }()
	from, _, err := k.expr(s.From)
	if err != nil {
		return nil, false, err
	}
	var items []Item
	for i, it := range s.Items {
		item, err := k.item(it, i)
		if err != nil {
			return nil, false, err
		}
		if item.Stateful {
			return nil, false, errorf(it.Pos, "stateful functions are not allowed in a nested SELECT")
		}
		items = append(items, item)
	}
	var where Fn
	if s.Where != nil {
		if where, _, err = k.expr(s.Where); err != nil {
			return nil, false, err
		}
	}
	isValue := s.Value
	return func(c *env.Ctx) any {
		src := from(c)
		var elems []any
		switch v := src.(type) {
		case []any:
			elems = v
		case map[string]any:
			elems = []any{v}
		default:
			return value.Undefined
		}
		sub := env.Ctx{In: c.In, St: c.St, Rule: c.Rule}
		out := make([]any, 0, len(elems))
		for _, e := range elems {
			sub.Doc = e
			if where != nil && !value.Truthy(where(&sub)) {
				continue
			}
			v := build(&sub, isValue, items)
			if !value.IsUndefined(v) {
				out = append(out, v)
			}
		}
		return out
	}, false, nil
}

// aggregate compiles an aggregate call of a GROUP BY rule into a read of
// its finished value (c.Aggs) and records its input.
func (k *compiler) aggregate(t *ast.Call) (Fn, bool, error) {
	name := strings.ToLower(t.Name)
	if !k.grouped {
		return nil, false, errorf(t.P, "aggregate %s() needs a GROUP BY window", name)
	}
	if k.inAgg || k.inWhere {
		return nil, false, errorf(t.P, "aggregate %s() is only allowed in SELECT, not nested in another aggregate or in WHERE", name)
	}
	a := Aggregate{Func: name}
	switch {
	case t.Star:
		if name != "count" {
			return nil, false, errorf(t.P, "only count takes *")
		}
	case name == "percentile":
		if len(t.Args) != 2 {
			return nil, false, errorf(t.P, "percentile takes 2 arguments (value, p), got %d", len(t.Args))
		}
		lit, ok := t.Args[1].(*ast.Literal)
		p, ok2 := value.ToFloat(litValue(lit, ok))
		if !ok || !ok2 || p < 0 || p > 100 {
			return nil, false, errorf(t.Args[1].Position(), "percentile's p must be a number literal in 0..1 (or 0..100)")
		}
		if p > 1 {
			p /= 100 // written as a percentage
		}
		a.Param = p
	default:
		if len(t.Args) != 1 {
			return nil, false, errorf(t.P, "%s takes 1 argument, got %d", name, len(t.Args))
		}
	}
	if !t.Star {
		k.inAgg = true
		f, _, err := k.expr(t.Args[0])
		k.inAgg = false
		if err != nil {
			return nil, false, err
		}
		a.Arg = f
		a.ArgKey, _ = argKey(t.Args[0])
	}
	slot := len(k.aggs)
	k.aggs = append(k.aggs, a)
	return func(c *env.Ctx) any {
		if slot < len(c.Aggs) {
			return c.Aggs[slot]
		}
		return value.Undefined
	}, false, nil
}

func litValue(l *ast.Literal, ok bool) any {
	if !ok {
		return nil
	}
	return l.Value
}
