// Package parser turns rule source text into an ast.File.
//
// A file holds one or more statements separated by ';'. A statement is a
// bare SELECT (a rule named after its file), or a named rule with actions:
//
//	CREATE RULE name AS
//	SELECT ... FROM 'topic/filter' [WHERE cond [FOR n MINUTES [RESOLVE]]]
//	  [GROUP BY TUMBLE(INTERVAL 1 MINUTE) | HOP(size, slide) [, key...]
//	   [EVENT TIME expr] [ALLOWED LATENESS INTERVAL 10 SECONDS]]
//	THEN action(arg => value, ...), ...
//	[ERROR ACTION action(...)];
package parser

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/iotpipe/iotpipe/rulesql/ast"
	"github.com/iotpipe/iotpipe/rulesql/lexer"
)

// Error is a syntax error at a position.
type Error struct {
	Pos ast.Pos
	Msg string
}

// Error formats the error as line:col: message.
func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Pos, e.Msg) }

// Parse parses a rule file.
func Parse(src string) (*ast.File, error) {
	toks, err := lexer.Lex(src)
	if err != nil {
		if le, ok := err.(*lexer.Error); ok {
			return nil, &Error{le.Pos, le.Msg}
		}
		return nil, err
	}
	p := &parser{toks: toks}
	f, err := p.file()
	if err != nil {
		return nil, err
	}
	return f, nil
}

// ParseExpr parses a single expression (as used in ${...} templates).
func ParseExpr(src string) (ast.Expr, error) {
	toks, err := lexer.Lex(src)
	if err != nil {
		if le, ok := err.(*lexer.Error); ok {
			return nil, &Error{le.Pos, le.Msg}
		}
		return nil, err
	}
	p := &parser{toks: toks}
	e, err := p.expr()
	if err != nil {
		return nil, err
	}
	if p.tok().Kind != lexer.EOF {
		return nil, p.errorf("unexpected %s after expression", p.tok())
	}
	return e, nil
}

type parser struct {
	toks []lexer.Token
	i    int
	// depth bounds recursion so hostile input cannot exhaust the stack.
	depth int
}

const maxDepth = 200

func (p *parser) tok() lexer.Token { return p.toks[p.i] }

func (p *parser) peekTok(n int) lexer.Token {
	if p.i+n < len(p.toks) {
		return p.toks[p.i+n]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) next() lexer.Token {
	t := p.toks[p.i]
	if p.i < len(p.toks)-1 {
		p.i++
	}
	return t
}

func (p *parser) is(s string) bool { return p.tok().Is(s) }

func (p *parser) accept(s string) bool {
	if p.is(s) {
		p.next()
		return true
	}
	return false
}

func (p *parser) expect(s string) (lexer.Token, error) {
	if !p.is(s) {
		return lexer.Token{}, p.errorf("expected %s, found %s", s, p.tok())
	}
	return p.next(), nil
}

func (p *parser) errorf(format string, args ...any) error {
	return &Error{p.tok().Pos, fmt.Sprintf(format, args...)}
}

func (p *parser) file() (*ast.File, error) {
	f := &ast.File{}
	for {
		for p.accept(";") {
		}
		if p.tok().Kind == lexer.EOF {
			break
		}
		r, err := p.rule()
		if err != nil {
			return nil, err
		}
		f.Rules = append(f.Rules, r)
		if p.tok().Kind == lexer.EOF {
			break
		}
		if !p.is(";") {
			return nil, p.errorf("expected ; or end of file after rule, found %s", p.tok())
		}
	}
	if len(f.Rules) == 0 {
		return nil, p.errorf("no rule in file")
	}
	return f, nil
}

func (p *parser) rule() (*ast.Rule, error) {
	r := &ast.Rule{Pos: p.tok().Pos}
	if p.accept("CREATE") {
		if _, err := p.expect("RULE"); err != nil {
			return nil, err
		}
		name := p.tok()
		if name.Kind != lexer.Ident || !name.Quoted && reserved[strings.ToLower(name.Text)] {
			return nil, p.errorf("expected rule name, found %s", name)
		}
		p.next()
		r.Name = name.Text
		if _, err := p.expect("AS"); err != nil {
			return nil, err
		}
	}
	sel, err := p.selectStmt(true)
	if err != nil {
		return nil, err
	}
	r.Select = sel
	if p.accept("THEN") {
		for {
			a, err := p.action()
			if err != nil {
				return nil, err
			}
			r.Actions = append(r.Actions, a)
			if !p.accept(",") {
				break
			}
		}
	}
	if p.is("ERROR") {
		p.next()
		if _, err := p.expect("ACTION"); err != nil {
			return nil, err
		}
		a, err := p.action()
		if err != nil {
			return nil, err
		}
		r.ErrorAction = a
	}
	return r, nil
}

func (p *parser) action() (*ast.Action, error) {
	t := p.tok()
	if t.Kind != lexer.Ident {
		return nil, p.errorf("expected action name, found %s", t)
	}
	p.next()
	a := &ast.Action{Type: strings.ToLower(t.Text), Pos: t.Pos}
	if _, err := p.expect("("); err != nil {
		return nil, err
	}
	for !p.is(")") {
		n := p.tok()
		if n.Kind != lexer.Ident {
			return nil, p.errorf("expected argument name, found %s", n)
		}
		p.next()
		if !p.accept("=>") && !p.accept("=") {
			return nil, p.errorf("expected => after argument name %s", n.Text)
		}
		v, err := p.expr()
		if err != nil {
			return nil, err
		}
		a.Args = append(a.Args, ast.ActionArg{Name: n.Text, Pos: n.Pos, Value: v})
		if !p.accept(",") {
			break
		}
	}
	if _, err := p.expect(")"); err != nil {
		return nil, err
	}
	return a, nil
}

func (p *parser) selectStmt(top bool) (*ast.Select, error) {
	st, err := p.expect("SELECT")
	if err != nil {
		return nil, err
	}
	s := &ast.Select{Pos: st.Pos}
	if p.is("VALUE") && !p.peekTok(1).Is(",") && !p.peekTok(1).Is("FROM") && !p.peekTok(1).Is("AS") {
		p.next()
		s.Value = true
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		s.Items = []*ast.SelectItem{{Pos: e.Position(), Expr: e}}
	} else {
		for {
			it, err := p.selectItem()
			if err != nil {
				return nil, err
			}
			s.Items = append(s.Items, it)
			if !p.accept(",") {
				break
			}
		}
	}
	if _, err := p.expect("FROM"); err != nil {
		return nil, err
	}
	if top {
		t := p.tok()
		if t.Kind != lexer.String && !(t.Kind == lexer.Ident && t.Quoted) {
			return nil, p.errorf("expected a quoted topic filter after FROM, found %s", t)
		}
		p.next()
		s.Topic, s.TopicPos = t.Text, t.Pos
	} else {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		s.From = e
	}
	if p.accept("WHERE") {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		s.Where = e
		if top && p.is("FOR") {
			f, err := p.forClause()
			if err != nil {
				return nil, err
			}
			s.For = f
		}
	}
	if top && p.is("GROUP") {
		g, err := p.groupBy()
		if err != nil {
			return nil, err
		}
		s.GroupBy = g
	}
	return s, nil
}

func (p *parser) selectItem() (*ast.SelectItem, error) {
	t := p.tok()
	if t.Is("*") && !p.peekTok(1).Is(".") {
		p.next()
		return &ast.SelectItem{Pos: t.Pos, Star: true}, nil
	}
	e, err := p.expr()
	if err != nil {
		return nil, err
	}
	it := &ast.SelectItem{Pos: t.Pos, Expr: e}
	if p.accept("AS") {
		for {
			n := p.tok()
			if n.Kind != lexer.Ident && n.Kind != lexer.String {
				return nil, p.errorf("expected alias, found %s", n)
			}
			p.next()
			it.Alias = append(it.Alias, n.Text)
			if !p.accept(".") {
				break
			}
		}
	}
	return it, nil
}

func (p *parser) forClause() (*ast.For, error) {
	t := p.next() // FOR
	d, err := p.duration()
	if err != nil {
		return nil, err
	}
	f := &ast.For{Pos: t.Pos, Duration: d}
	if p.accept("RESOLVE") {
		f.Resolve = true
	}
	return f, nil
}

var units = map[string]time.Duration{
	"millisecond": time.Millisecond, "milliseconds": time.Millisecond, "ms": time.Millisecond,
	"second": time.Second, "seconds": time.Second, "s": time.Second,
	"minute": time.Minute, "minutes": time.Minute, "m": time.Minute,
	"hour": time.Hour, "hours": time.Hour, "h": time.Hour,
	"day": 24 * time.Hour, "days": 24 * time.Hour, "d": 24 * time.Hour,
}

// duration parses [INTERVAL] n UNIT.
func (p *parser) duration() (time.Duration, error) {
	p.accept("INTERVAL")
	n := p.tok()
	if n.Kind != lexer.Int {
		return 0, p.errorf("expected a whole number of time units, found %s", n)
	}
	p.next()
	v, err := strconv.ParseInt(n.Text, 10, 64)
	if err != nil || v <= 0 || v > 1<<31 {
		return 0, &Error{n.Pos, fmt.Sprintf("bad duration %s", n.Text)}
	}
	u := p.tok()
	unit, ok := units[strings.ToLower(u.Text)]
	if u.Kind != lexer.Ident || !ok {
		return 0, p.errorf("expected a time unit (SECONDS, MINUTES, HOURS, DAYS), found %s", u)
	}
	p.next()
	return time.Duration(v) * unit, nil
}

func (p *parser) groupBy() (*ast.GroupBy, error) {
	g := &ast.GroupBy{Pos: p.next().Pos}
	if _, err := p.expect("BY"); err != nil {
		return nil, err
	}
	w := p.tok()
	switch {
	case w.Is("TUMBLE") || w.Is("TUMBLING"):
		g.Window = "tumbling"
	case w.Is("HOP") || w.Is("HOPPING"):
		g.Window = "hopping"
	case w.Is("WINDOW"):
	default:
		return nil, p.errorf("GROUP BY must start with a window: TUMBLE(INTERVAL n UNIT) or HOP(size, slide)")
	}
	p.next()
	if _, err := p.expect("("); err != nil {
		return nil, err
	}
	if g.Window == "" {
		k := p.tok()
		switch {
		case k.Is("TUMBLING") || k.Is("TUMBLE"):
			g.Window = "tumbling"
		case k.Is("HOPPING") || k.Is("HOP"):
			g.Window = "hopping"
		default:
			return nil, p.errorf("expected TUMBLING or HOPPING, found %s", k)
		}
		p.next()
		if _, err := p.expect(","); err != nil {
			return nil, err
		}
	}
	d, err := p.duration()
	if err != nil {
		return nil, err
	}
	g.Size, g.Slide = d, d
	if g.Window == "hopping" {
		if _, err := p.expect(","); err != nil {
			return nil, err
		}
		if g.Slide, err = p.duration(); err != nil {
			return nil, err
		}
	}
	if _, err := p.expect(")"); err != nil {
		return nil, err
	}
	for p.accept(",") {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		g.Keys = append(g.Keys, e)
	}
	for {
		switch {
		case p.is("EVENT"):
			p.next()
			if _, err := p.expect("TIME"); err != nil {
				return nil, err
			}
			e, err := p.expr()
			if err != nil {
				return nil, err
			}
			g.EventTime = e
		case p.is("ALLOWED"):
			p.next()
			if _, err := p.expect("LATENESS"); err != nil {
				return nil, err
			}
			d, err := p.duration()
			if err != nil {
				return nil, err
			}
			g.Lateness = d
		default:
			return g, nil
		}
	}
}
