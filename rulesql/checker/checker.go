// Package checker finds the errors in a parsed rule that are certain
// before any event arrives: a bad topic filter, an unknown function or
// action, a wrong argument count, an operator applied to a literal that
// can never work, misplaced aggregates or stateful calls.
package checker

import (
	"fmt"
	"sort"
	"strings"

	"github.com/iotpipe/iotpipe/rulesql/ast"
	"github.com/iotpipe/iotpipe/rulesql/funcs"
	"github.com/iotpipe/iotpipe/rulesql/value"
	chddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
)

// Error is one problem at a source position.
type Error struct {
	Pos ast.Pos
	Msg string
}

// Error formats the error as line:col: message.
func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Pos, e.Msg) }

// ActionSpec describes an action type: its required and optional
// argument names.
type ActionSpec struct {
	Required []string
	Optional []string
}

// Actions returns the action types rules may declare.
func Actions() map[string]ActionSpec {
	return map[string]ActionSpec{
		"webhook":    {Required: []string{"url"}, Optional: []string{"method", "headers", "body", "timeout"}},
		"republish":  {Required: []string{"topic"}, Optional: []string{"qos", "retain", "payload"}},
		"command":    {Required: []string{"thing"}, Optional: []string{"topic", "payload", "qos"}},
		"kafka":      {Required: []string{"topic"}, Optional: []string{"key", "headers", "partition"}},
		"clickhouse": {Required: []string{"table"}, Optional: []string{"columns"}},
	}
}

var aggregates = map[string]bool{
	"count": true, "sum": true, "avg": true, "min": true, "max": true,
	"first": true, "last": true, "stddev": true, "percentile": true,
}

// Check returns every certain error of the rule, in source order.
func Check(r *ast.Rule) []error {
	c := &checker{}
	s := r.Select
	if err := ValidateFilter(s.Topic); err != nil {
		c.add(s.TopicPos, "bad topic filter '%s': %v", s.Topic, err)
	}
	grouped := s.GroupBy != nil
	for _, it := range s.Items {
		if it.Star {
			continue
		}
		c.expr(it.Expr, ctx{grouped: grouped, topSelect: true})
	}
	if s.Where != nil {
		c.expr(s.Where, ctx{})
	}
	if g := s.GroupBy; g != nil {
		if g.Slide <= 0 || g.Slide > g.Size {
			c.add(g.Pos, "hopping window slide %v must be positive and at most its size %v", g.Slide, g.Size)
		} else if g.Size%g.Slide != 0 {
			c.add(g.Pos, "window size %v must be a multiple of the slide %v", g.Size, g.Slide)
		}
		for _, k := range g.Keys {
			c.expr(k, ctx{})
		}
		if g.EventTime != nil {
			c.expr(g.EventTime, ctx{})
		}
		if s.For != nil {
			c.add(s.For.Pos, "FOR and GROUP BY cannot be combined in one rule")
		}
	}
	if s.For != nil && s.Where == nil {
		c.add(s.For.Pos, "FOR needs a WHERE condition")
	}
	specs := Actions()
	all := append([]*ast.Action{}, r.Actions...)
	if r.ErrorAction != nil {
		all = append(all, r.ErrorAction)
	}
	for _, a := range all {
		c.action(a, specs)
	}
	sort.SliceStable(c.errs, func(i, j int) bool {
		a, b := c.errs[i].(*Error).Pos, c.errs[j].(*Error).Pos
		return a.Line < b.Line || a.Line == b.Line && a.Col < b.Col
	})
	return c.errs
}

// ValidateFilter checks an MQTT topic filter: non-empty, '#' only as the
// whole last level, '+' only as a whole level.
func ValidateFilter(f string) error {
	if f == "" {
		return fmt.Errorf("empty")
	}
	if strings.ContainsRune(f, 0) {
		return fmt.Errorf("contains NUL")
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("'#' must be the whole last level")
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("'+' must be a whole level")
		}
	}
	return nil
}

type checker struct {
	errs []error
}

func (c *checker) add(p ast.Pos, format string, args ...any) {
	c.errs = append(c.errs, &Error{p, fmt.Sprintf(format, args...)})
}

type ctx struct {
	grouped   bool // aggregates allowed
	topSelect bool // stateful calls allowed
	inAgg     bool
}

func (c *checker) expr(e ast.Expr, x ctx) {
	switch t := e.(type) {
	case nil:
	case *ast.Field:
		c.expr(t.X, x)
	case *ast.Index:
		c.expr(t.X, x)
		c.expr(t.Index, x)
	case *ast.Unary:
		if t.Op == "-" {
			c.numericLiteral(t.X, "-")
		}
		c.expr(t.X, x)
	case *ast.Binary:
		c.binary(t)
		c.expr(t.L, x)
		c.expr(t.R, x)
	case *ast.Cast:
		if _, err := funcs.CastTarget(t.Type); err != nil {
			c.add(t.P, "%v", err)
		}
		c.expr(t.X, x)
	case *ast.Case:
		c.expr(t.Subject, x)
		for _, w := range t.Whens {
			c.expr(w.Cond, x)
			c.expr(w.Then, x)
		}
		c.expr(t.Else, x)
	case *ast.Array:
		for _, v := range t.Elems {
			c.expr(v, x)
		}
	case *ast.Object:
		for _, v := range t.Values {
			c.expr(v, x)
		}
	case *ast.SubSelect:
		s := t.Select
		inner := ctx{}
		for _, it := range s.Items {
			if !it.Star {
				c.expr(it.Expr, inner)
			}
		}
		c.expr(s.From, inner)
		c.expr(s.Where, inner)
	case *ast.Interval:
		c.add(t.P, "INTERVAL is only valid in a GROUP BY window")
	case *ast.Call:
		c.call(t, x)
	}
}

func (c *checker) call(t *ast.Call, x ctx) {
	name := strings.ToLower(t.Name)
	inner := x
	switch {
	case aggregates[name]:
		switch {
		case !x.grouped:
			c.add(t.P, "aggregate %s() needs a GROUP BY window (and is only allowed in SELECT)", name)
		case x.inAgg:
			c.add(t.P, "aggregate %s() cannot be nested in another aggregate", name)
		case t.Star && name != "count":
			c.add(t.P, "only count takes *")
		case name == "percentile" && len(t.Args) != 2:
			c.add(t.P, "percentile takes 2 arguments (value, p), got %d", len(t.Args))
		case name != "percentile" && !t.Star && len(t.Args) != 1:
			c.add(t.P, "%s takes 1 argument, got %d", name, len(t.Args))
		}
		inner.inAgg = true
		inner.topSelect = false
	case name == "pewma":
		if !x.topSelect || x.inAgg {
			c.add(t.P, "pewma() is only allowed in the top-level SELECT; refer to its alias in WHERE (SELECT pewma(x) AS a ... WHERE a.anomaly)")
		}
		if len(t.Args) < 1 || len(t.Args) > 5 {
			c.add(t.P, "pewma takes 1 to 5 arguments (value [, alpha0, beta, T, threshold]), got %d", len(t.Args))
		}
		for _, a := range t.Args[min(1, len(t.Args)):] {
			if l, ok := a.(*ast.Literal); !ok || value.KindOf(l.Value) != value.KindInt && value.KindOf(l.Value) != value.KindDecimal {
				c.add(a.Position(), "pewma parameters must be number literals")
			}
		}
		inner.topSelect = false
	default:
		f, ok := funcs.Lookup(t.Name)
		if !ok {
			c.add(t.P, "unknown function %s", t.Name)
			break
		}
		if t.Star {
			c.add(t.P, "%s(*) is not allowed; only count(*)", f.Name)
		}
		if len(t.Args) < f.Min || f.Max >= 0 && len(t.Args) > f.Max {
			c.add(t.P, "%s takes %s, got %d", f.Name, arity(f), len(t.Args))
			break
		}
		if f.Prepare != nil {
			consts := make([]funcs.Const, len(t.Args))
			for i, a := range t.Args {
				if l, ok := a.(*ast.Literal); ok {
					consts[i] = funcs.Const{Value: l.Value, OK: true}
				}
			}
			if _, err := f.Prepare(consts); err != nil {
				c.add(t.P, "%s: %v", f.Name, err)
			}
		}
		if isNumericFunc(f.Name) {
			for _, a := range t.Args {
				c.numericLiteral(a, f.Name+"()")
			}
		}
		if name == "topic" && len(t.Args) == 1 {
			if l, ok := t.Args[0].(*ast.Literal); ok {
				if n, ok := l.Value.(int64); !ok || n < 1 {
					c.add(l.P, "topic(n) needs a level number of 1 or more")
				}
			}
		}
		inner.topSelect = false
	}
	for _, a := range t.Args {
		c.expr(a, inner)
	}
}

func isNumericFunc(name string) bool {
	switch name {
	case "abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "cosh", "exp", "floor", "ln", "log",
		"mod", "power", "remainder", "round", "sign", "sin", "sinh", "sqrt", "tan", "tanh", "trunc",
		"bitand", "bitor", "bitxor", "bitnot":
		return true
	}
	return false
}

// numericLiteral reports a literal that can never be converted to a number.
func (c *checker) numericLiteral(e ast.Expr, what string) {
	l, ok := e.(*ast.Literal)
	if !ok {
		if _, isArr := e.(*ast.Array); isArr {
			c.add(e.Position(), "%s needs a number, not an array", what)
		}
		if _, isObj := e.(*ast.Object); isObj {
			c.add(e.Position(), "%s needs a number, not an object", what)
		}
		return
	}
	if l.Value == nil {
		return // null: Undefined at run time, but often written on purpose
	}
	if _, ok := value.ToNum(l.Value); !ok {
		c.add(l.P, "%s needs a number; %s can never be one", what, describe(l.Value))
	}
}

func describe(v any) string {
	switch t := v.(type) {
	case string:
		return fmt.Sprintf("the string '%s'", t)
	case bool:
		return fmt.Sprintf("the boolean %v", t)
	}
	return fmt.Sprintf("%v", v)
}

func (c *checker) binary(t *ast.Binary) {
	switch t.Op {
	case "+", "-", "*", "/", "%":
		c.numericLiteral(t.L, "operator "+t.Op)
		c.numericLiteral(t.R, "operator "+t.Op)
	case "<", "<=", ">", ">=":
		for _, side := range []ast.Expr{t.L, t.R} {
			switch s := side.(type) {
			case *ast.Literal:
				if k := value.KindOf(s.Value); k == value.KindBool || k == value.KindNull {
					c.add(s.P, "operator %s compares numbers or strings; %s is %s", t.Op, describe(s.Value), k)
				}
			case *ast.Array, *ast.Object:
				c.add(side.Position(), "operator %s compares numbers or strings, not arrays or objects", t.Op)
			}
		}
	}
}

func (c *checker) action(a *ast.Action, specs map[string]ActionSpec) {
	spec, ok := specs[a.Type]
	if !ok {
		names := make([]string, 0, len(specs))
		for n := range specs {
			names = append(names, n)
		}
		sort.Strings(names)
		c.add(a.Pos, "unknown action %s (known: %s)", a.Type, strings.Join(names, ", "))
		return
	}
	seen := map[string]bool{}
	for _, arg := range a.Args {
		if seen[arg.Name] {
			c.add(arg.Pos, "argument %s given twice", arg.Name)
		}
		seen[arg.Name] = true
		known := false
		for _, n := range append(append([]string{}, spec.Required...), spec.Optional...) {
			known = known || n == arg.Name
		}
		if !known {
			c.add(arg.Pos, "%s has no argument %s (arguments: %s)", a.Type, arg.Name,
				strings.Join(append(append([]string{}, spec.Required...), spec.Optional...), ", "))
		}
		c.literalArg(arg.Value)
	}
	for _, r := range spec.Required {
		if !seen[r] {
			c.add(a.Pos, "%s needs argument %s", a.Type, r)
		}
	}
	if a.Type == "clickhouse" {
		c.clickhouseTable(a)
	}
}

// clickhouseTable checks the table and columns of a clickhouse action
// as the ClickHouse sink reads them (clickhouse.ParseRuleTable): a plain
// table name, and an object of column name to type.
func (c *checker) clickhouseTable(a *ast.Action) {
	table, columns := "", map[string]any(nil)
	for _, arg := range a.Args {
		switch arg.Name {
		case "table":
			lit, ok := arg.Value.(*ast.Literal)
			if !ok {
				return // reported by literalArg
			}
			if table, ok = lit.Value.(string); !ok {
				c.add(arg.Pos, "clickhouse table is a table name in quotes")
				return
			}
		case "columns":
			obj, ok := arg.Value.(*ast.Object)
			if !ok {
				c.add(arg.Pos, "clickhouse columns is an object of column name to type, e.g. {'lux': 'Float64'}")
				return
			}
			columns = map[string]any{}
			for i, k := range obj.Keys {
				if lit, ok := obj.Values[i].(*ast.Literal); ok {
					columns[k] = lit.Value
				}
			}
		}
	}
	if _, err := chddl.ParseRuleTable(table, columns); err != nil {
		c.add(a.Pos, "clickhouse action: %v", err)
	}
}

// literalArg checks that an action argument is a literal (templates live
// inside its strings).
func (c *checker) literalArg(e ast.Expr) {
	switch t := e.(type) {
	case *ast.Literal:
	case *ast.Array:
		for _, v := range t.Elems {
			c.literalArg(v)
		}
	case *ast.Object:
		for _, v := range t.Values {
			c.literalArg(v)
		}
	default:
		c.add(e.Position(), "action arguments are literals; use a '${expr}' template inside a string to compute a value")
	}
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
