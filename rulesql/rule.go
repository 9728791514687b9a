// Package rulesql is the rule language of iotpipe: AWS IoT SQL
// (2016-03-23) rule files, compiled once and evaluated per event, with
// actions, a topic router and the stream-analytics extensions (pewma(),
// GROUP BY windows, WHERE ... FOR durations).
//
// The pipeline follows expr-lang: lexer → parser → ast → checker →
// compile (to a tree of typed closures) with the function catalog in
// funcs; this package is the facade:
//
//	rules, err := rulesql.Compile(src, rulesql.WithFile("alerts.sql"))
//	out, fired, err := rules[0].Eval(&rulesql.Input{Topic: t, Payload: v}, state)
package rulesql

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/iotpipe/iotpipe/rulesql/ast"
	"github.com/iotpipe/iotpipe/rulesql/checker"
	"github.com/iotpipe/iotpipe/rulesql/compile"
	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/parser"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

// Input is one event as rules see it (see env.Input for the fields).
type Input = env.Input

// State is the store stateful functions (pewma) keep their state in.
type State = env.State

// ShadowReader answers get_thing_shadow().
type ShadowReader = env.ShadowReader

// Undefined is AWS IoT SQL's non-value; it never appears inside outputs,
// and a SELECT VALUE that evaluates to it gives Undefined as the output.
var Undefined = value.Undefined

// IsUndefined reports whether v is Undefined.
func IsUndefined(v any) bool { return value.IsUndefined(v) }

// Pos is a position in a rule file.
type Pos = ast.Pos

// Error is a problem in a rule file, at a position.
type Error struct {
	File string
	Pos  Pos
	Msg  string
}

// Error formats the error as file:line:col: message.
func (e *Error) Error() string {
	if e.File == "" {
		return fmt.Sprintf("%d:%d: %s", e.Pos.Line, e.Pos.Col, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Pos.Line, e.Pos.Col, e.Msg)
}

// Errors is every problem found, in file and position order.
type Errors []*Error

// Error lists the errors, one a line.
func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Option changes how Compile works.
type Option func(*config)

type config struct {
	file string
	name string
}

// WithFile names the file the source came from: errors are prefixed with
// it, and a bare SELECT is named after it (without directory and .sql).
// Default: no file, and a bare SELECT is named "rule".
func WithFile(path string) Option {
	return func(c *config) { c.file = path }
}

// WithName sets the name of a bare SELECT rule, overriding the name taken
// from WithFile.
func WithName(name string) Option {
	return func(c *config) { c.name = name }
}

// Action is a declared action: its type (webhook, republish, command,
// kafka, clickhouse) and its argument templates.
type Action struct {
	Type string
	// Args maps each argument name to its value: a *Template for strings,
	// or a number, bool, nil, []any or map[string]any whose strings are
	// *Template too.
	Args map[string]any
	Pos  Pos
}

// Render evaluates the argument templates against the event and returns
// the params (strings substituted, structure kept).
func (a *Action) Render(in *Input) map[string]any {
	c := &env.Ctx{In: in, Doc: in.Payload}
	out := make(map[string]any, len(a.Args))
	for k, v := range a.Args {
		out[k] = renderArg(c, v)
	}
	return out
}

func renderArg(c *env.Ctx, v any) any {
	switch t := v.(type) {
	case *Template:
		return t.render(c)
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = renderArg(c, x)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = renderArg(c, x)
		}
		return out
	}
	return v
}

// Window is a rule's GROUP BY window.
type Window = compile.Window

// Duration is a rule's WHERE ... FOR condition: the condition must hold
// for Duration before the rule fires; with Resolve a resolved event is
// sent when it stops holding.
type Duration struct {
	Duration time.Duration
	Resolve  bool
}

// Aggregate is one aggregate call of a GROUP BY rule: the processor
// feeds Arg's value (nil Arg: count(*)) for every event to an aggregator
// of kind Func (with Param for percentile) and hands the finished values
// to AggregateRow in this order.
type Aggregate struct {
	Func  string
	Arg   *Program
	Param float64
	// ArgKey identifies Arg's expression when it is made of attributes,
	// literals, operators and casts only: aggregates with the same
	// non-empty ArgKey aggregate the same values. "" for count(*) and
	// for arguments that call functions.
	ArgKey string
}

// Program is one compiled expression.
type Program struct {
	fn   compile.Fn
	rule string
	// ctxs recycles evaluation contexts (see Rule).
	ctxs sync.Pool
}

// Eval evaluates the expression for an event.
func (p *Program) Eval(in *Input, st State) (any, error) {
	c, _ := p.ctxs.Get().(*env.Ctx)
	if c == nil {
		c = new(env.Ctx)
	}
	defer p.ctxs.Put(c) // see Rule.Eval
	return p.eval(c, in, st)
}

func (p *Program) eval(c *env.Ctx, in *Input, st State) (any, error) {
	c.Reset(in, st, p.rule)
	v := p.fn(c)
	return v, c.Err
}

// Rule is one compiled rule.
type Rule struct {
	// Name is the declared name, or the file's base name for a bare SELECT.
	Name string
	// File is the file the rule came from ("" when compiled from a string).
	File string
	// Pos is where the rule starts in its file.
	Pos Pos
	// Topic is the FROM topic filter.
	Topic string
	// Where is the compiled WHERE condition, or nil when there is none.
	Where *Program
	// Actions are the THEN actions; ErrorAction runs when one fails.
	Actions     []*Action
	ErrorAction *Action
	// Window, Keys, EventTime and Aggregates describe a GROUP BY rule
	// (Window is nil otherwise). Keys are the GROUP BY expressions after
	// the window; EventTime is nil for receive time.
	Window     *Window
	Keys       []*Program
	EventTime  *Program
	Aggregates []Aggregate
	// For is the WHERE ... FOR duration condition, or nil.
	For *Duration
	// Stateful reports whether the rule calls stateful functions (pewma),
	// so Eval needs a State.
	Stateful bool

	query *compile.Query
	index int
	// ctxs recycles evaluation contexts: closures take a *env.Ctx, which
	// would otherwise escape to the heap on every Eval.
	ctxs sync.Pool
}

// Index returns the rule's position in the Set NewSet last put it in
// (its load order there), 0 before.
func (r *Rule) Index() int { return r.index }

// Compile parses, checks and compiles every rule in src.
func Compile(src string, opts ...Option) ([]*Rule, error) {
	var c config
	for _, o := range opts {
		o(&c)
	}
	f, err := parser.Parse(src)
	if err != nil {
		var pe *parser.Error
		if errors.As(err, &pe) {
			return nil, Errors{{File: c.file, Pos: pe.Pos, Msg: pe.Msg}}
		}
		return nil, Errors{{File: c.file, Msg: err.Error()}}
	}
	name := c.name
	if name == "" && c.file != "" {
		name = strings.TrimSuffix(filepath.Base(c.file), filepath.Ext(c.file))
	}
	if name == "" {
		name = "rule"
	}
	var errs Errors
	var rules []*Rule
	bare := 0
	for _, ar := range f.Rules {
		if ar.Name == "" {
			bare++
		}
	}
	for i, ar := range f.Rules {
		n := ar.Name
		if n == "" {
			n = name
			if bare > 1 {
				n = fmt.Sprintf("%s_%d", name, i+1)
			}
		}
		r, es := compileRule(ar, n, c.file)
		errs = append(errs, es...)
		if r != nil {
			rules = append(rules, r)
		}
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if seen[r.Name] {
			errs = append(errs, &Error{File: c.file, Pos: r.Pos, Msg: fmt.Sprintf("rule %s is declared twice", r.Name)})
		}
		seen[r.Name] = true
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return rules, nil
}

func compileRule(ar *ast.Rule, name, file string) (*Rule, Errors) {
	var errs Errors
	for _, e := range checker.Check(ar) {
		ce := e.(*checker.Error)
		errs = append(errs, &Error{File: file, Pos: ce.Pos, Msg: ce.Msg})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	q, err := compile.Select(ar.Select, compile.Options{Rule: name})
	if err != nil {
		return nil, Errors{toError(err, file)}
	}
	r := &Rule{Name: name, File: file, Pos: ar.Pos, Topic: ar.Select.Topic, query: q, Window: q.Window, Stateful: q.Stateful > 0}
	if q.Where != nil {
		r.Where = &Program{fn: q.Where, rule: name}
	}
	for _, k := range q.Keys {
		r.Keys = append(r.Keys, &Program{fn: k, rule: name})
	}
	if q.EventTime != nil {
		r.EventTime = &Program{fn: q.EventTime, rule: name}
	}
	for _, a := range q.Aggregates {
		ag := Aggregate{Func: a.Func, Param: a.Param, ArgKey: a.ArgKey}
		if a.Arg != nil {
			ag.Arg = &Program{fn: a.Arg, rule: name}
		}
		r.Aggregates = append(r.Aggregates, ag)
	}
	if f := ar.Select.For; f != nil {
		r.For = &Duration{Duration: f.Duration, Resolve: f.Resolve}
	}
	for _, a := range ar.Actions {
		act, err := compileAction(a, name)
		if err != nil {
			errs = append(errs, toError(err, file))
			continue
		}
		r.Actions = append(r.Actions, act)
	}
	if ar.ErrorAction != nil {
		act, err := compileAction(ar.ErrorAction, name)
		if err != nil {
			errs = append(errs, toError(err, file))
		}
		r.ErrorAction = act
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return r, nil
}

func toError(err error, file string) *Error {
	var ce *compile.Error
	if errors.As(err, &ce) {
		return &Error{File: file, Pos: ce.Pos, Msg: ce.Msg}
	}
	return &Error{File: file, Msg: err.Error()}
}

func compileAction(a *ast.Action, rule string) (*Action, error) {
	act := &Action{Type: a.Type, Pos: a.Pos, Args: map[string]any{}}
	for _, arg := range a.Args {
		v, err := actionValue(arg.Value, rule)
		if err != nil {
			return nil, err
		}
		act.Args[arg.Name] = v
	}
	return act, nil
}

func actionValue(e ast.Expr, rule string) (any, error) {
	switch t := e.(type) {
	case *ast.Literal:
		if s, ok := t.Value.(string); ok {
			return parseTemplate(s, t.P, rule)
		}
		return t.Value, nil
	case *ast.Array:
		out := make([]any, len(t.Elems))
		for i, x := range t.Elems {
			v, err := actionValue(x, rule)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case *ast.Object:
		out := make(map[string]any, len(t.Keys))
		for i, k := range t.Keys {
			v, err := actionValue(t.Values[i], rule)
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, nil
	}
	return nil, &compile.Error{Pos: e.Position(), Msg: "action arguments are literals; use a '${expr}' template inside a string"}
}

// ParseFile reads, parses, checks and compiles the rules of one file.
func ParseFile(path string) ([]*Rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read rule file: %w", err)
	}
	return Compile(string(b), WithFile(path))
}

// Set is a loaded directory of rules with its router.
type Set struct {
	// Rules in load order: files sorted by path, rules in file order.
	Rules  []*Rule
	Router Router
}

// NewSet builds a Set from compiled rules; rule names must be unique.
func NewSet(rules []*Rule) (*Set, error) {
	s := &Set{}
	seen := map[string]*Rule{}
	var errs Errors
	for i, r := range rules {
		if prev, ok := seen[r.Name]; ok {
			errs = append(errs, &Error{File: r.File, Pos: r.Pos, Msg: fmt.Sprintf("rule name %s is already used at %s:%d:%d", r.Name, prev.File, prev.Pos.Line, prev.Pos.Col)})
			continue
		}
		seen[r.Name] = r
		r.index = i
		s.Rules = append(s.Rules, r)
		s.Router.Add(r)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return s, nil
}

// Match returns the rules whose topic filter matches topic, in load order.
func (s *Set) Match(topic string) []*Rule { return s.Router.Match(topic) }

// Rule returns the rule named name, or nil.
func (s *Set) Rule(name string) *Rule {
	for _, r := range s.Rules {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// LoadDir loads every .sql file under dir (recursively, in path order).
// All errors of all files are returned together, each naming file:line:col.
func LoadDir(dir string) (*Set, error) {
	files, err := SQLFiles(dir)
	if err != nil {
		return nil, err
	}
	return LoadFiles(files)
}

// SQLFiles lists the .sql files under dir (or dir itself if it is a file),
// sorted.
func SQLFiles(dir string) ([]string, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	if !st.IsDir() {
		return []string{dir}, nil
	}
	// A rules directory is flat: subdirectories are not read, so a
	// directory of rule sets can be passed one set at a time.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load rules from %s: %w", dir, err)
	}
	var files []string
	for _, e := range entries {
		if !e.IsDir() && strings.EqualFold(filepath.Ext(e.Name()), ".sql") {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(files)
	return files, nil
}

// LoadFiles compiles the given rule files into one Set.
func LoadFiles(files []string) (*Set, error) {
	var all []*Rule
	var errs Errors
	seen := map[string]bool{}
	for _, f := range files {
		if abs, err := filepath.Abs(f); err == nil {
			if seen[abs] {
				continue // named twice (a file and its directory)
			}
			seen[abs] = true
		}
		rules, err := ParseFile(f)
		if err != nil {
			var es Errors
			if errors.As(err, &es) {
				errs = append(errs, es...)
				continue
			}
			return nil, err
		}
		all = append(all, rules...)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return NewSet(all)
}
