// Package ast defines the syntax tree of rule files: rules, SELECT
// statements, expressions and action declarations.
package ast

import (
	"time"

	"github.com/iotpipe/iotpipe/rulesql/lexer"
)

// Pos is a source position (line and column).
type Pos = lexer.Pos

// File is a parsed rule file.
type File struct {
	Rules []*Rule
}

// Rule is one rule: a name, a SELECT and its actions.
type Rule struct {
	// Name is the declared name, or "" for a bare SELECT (the caller names
	// it after the file).
	Name        string
	Pos         Pos
	Select      *Select
	Actions     []*Action
	ErrorAction *Action
}

// Action is an action declaration: name(key => value, ...). Values are
// literal expressions whose strings are substitution templates.
type Action struct {
	Type string
	Pos  Pos
	Args []ActionArg
}

// ActionArg is one named action argument.
type ActionArg struct {
	Name  string
	Pos   Pos
	Value Expr
}

// Select is a SELECT statement, top level or nested.
type Select struct {
	Pos   Pos
	Value bool // SELECT VALUE expr
	Items []*SelectItem
	// Topic is the FROM topic filter of a top-level SELECT.
	Topic    string
	TopicPos Pos
	// From is the FROM expression of a nested SELECT (FROM * or a path).
	From  Expr
	Where Expr
	// For is the WHERE ... FOR <duration> [RESOLVE] extension.
	For *For
	// GroupBy is the windowed-aggregation extension.
	GroupBy *GroupBy
}

// SelectItem is "*" or "expr [AS alias]"; a dotted alias builds nested
// objects.
type SelectItem struct {
	Pos   Pos
	Star  bool
	Expr  Expr
	Alias []string
}

// For is a duration condition.
type For struct {
	Pos      Pos
	Duration time.Duration
	Resolve  bool
}

// GroupBy is GROUP BY TUMBLE(size) | HOP(size, slide) [, key...]
// [EVENT TIME expr] [ALLOWED LATENESS interval].
type GroupBy struct {
	Pos       Pos
	Window    string // "tumbling" or "hopping"
	Size      time.Duration
	Slide     time.Duration
	Keys      []Expr
	EventTime Expr
	Lateness  time.Duration
}

// Expr is an expression node.
type Expr interface {
	Position() Pos
}

// Literal is a constant: int64, float64, string, bool or nil.
type Literal struct {
	P     Pos
	Value any
}

// Ident is a top-level attribute reference (or a SELECT alias in WHERE).
type Ident struct {
	P    Pos
	Name string
}

// Star is * used as a value: the whole current document.
type Star struct {
	P Pos
}

// Field is X.Name.
type Field struct {
	P    Pos
	X    Expr
	Name string
}

// Index is X[Index].
type Index struct {
	P     Pos
	X     Expr
	Index Expr
}

// Unary is NOT X or -X.
type Unary struct {
	P  Pos
	Op string // "NOT" or "-"
	X  Expr
}

// Binary is L op R.
type Binary struct {
	P    Pos
	Op   string // + - * / % = <> < <= > >= AND OR
	L, R Expr
}

// Call is a function call.
type Call struct {
	P    Pos
	Name string
	Args []Expr
	// Star is set for count(*).
	Star bool
}

// Cast is cast(X AS Type).
type Cast struct {
	P    Pos
	X    Expr
	Type string
}

// When is one WHEN ... THEN ... arm of a CASE.
type When struct {
	Cond, Then Expr
}

// Case is CASE [subject] WHEN ... THEN ... [ELSE ...] END.
type Case struct {
	P       Pos
	Subject Expr // nil for a searched CASE
	Whens   []When
	Else    Expr
}

// Array is an array literal [a, b].
type Array struct {
	P     Pos
	Elems []Expr
}

// Object is an object literal {'k': v}.
type Object struct {
	P      Pos
	Keys   []string
	Values []Expr
}

// SubSelect is a nested SELECT used as a value.
type SubSelect struct {
	P      Pos
	Select *Select
}

// Interval is INTERVAL n UNIT, only valid as a window argument.
type Interval struct {
	P Pos
	D time.Duration
}

// Position returns the node's position.
func (e *Literal) Position() Pos { return e.P }

// Position returns the node's position.
func (e *Ident) Position() Pos { return e.P }

// Position returns the node's position.
func (e *Star) Position() Pos { return e.P }

// Position returns the node's position.
func (e *Field) Position() Pos { return e.P }

// Position returns the node's position.
func (e *Index) Position() Pos { return e.P }

// Position returns the node's position.
func (e *Unary) Position() Pos { return e.P }

// Position returns the node's position.
func (e *Binary) Position() Pos { return e.P }

// Position returns the node's position.
func (e *Call) Position() Pos { return e.P }

// Position returns the node's position.
func (e *Cast) Position() Pos { return e.P }

// Position returns the node's position.
func (e *Case) Position() Pos { return e.P }

// Position returns the node's position.
func (e *Array) Position() Pos { return e.P }

// Position returns the node's position.
func (e *Object) Position() Pos { return e.P }

// Position returns the node's position.
func (e *SubSelect) Position() Pos { return e.P }

// Position returns the node's position.
func (e *Interval) Position() Pos { return e.P }

// Walk calls fn for e and every expression below it, depth first, until
// fn returns false for a node (its children are then skipped). Nested
// SELECTs are walked too.
func Walk(e Expr, fn func(Expr) bool) {
	if e == nil || !fn(e) {
		return
	}
	switch t := e.(type) {
	case *Field:
		Walk(t.X, fn)
	case *Index:
		Walk(t.X, fn)
		Walk(t.Index, fn)
	case *Unary:
		Walk(t.X, fn)
	case *Binary:
		Walk(t.L, fn)
		Walk(t.R, fn)
	case *Call:
		for _, a := range t.Args {
			Walk(a, fn)
		}
	case *Cast:
		Walk(t.X, fn)
	case *Case:
		Walk(t.Subject, fn)
		for _, w := range t.Whens {
			Walk(w.Cond, fn)
			Walk(w.Then, fn)
		}
		Walk(t.Else, fn)
	case *Array:
		for _, x := range t.Elems {
			Walk(x, fn)
		}
	case *Object:
		for _, x := range t.Values {
			Walk(x, fn)
		}
	case *SubSelect:
		s := t.Select
		for _, it := range s.Items {
			Walk(it.Expr, fn)
		}
		Walk(s.From, fn)
		Walk(s.Where, fn)
	}
}
