package parser

import (
	"strconv"
	"strings"

	"github.com/iotpipe/iotpipe/rulesql/ast"
	"github.com/iotpipe/iotpipe/rulesql/lexer"
	"github.com/iotpipe/iotpipe/schemas/payload"
)

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.errorf("expression nested too deeply")
	}
	return nil
}

func (p *parser) expr() (ast.Expr, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	return p.or()
}

func (p *parser) or() (ast.Expr, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.is("OR") {
		t := p.next()
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &ast.Binary{P: t.Pos, Op: "OR", L: l, R: r}
	}
	return l, nil
}

func (p *parser) and() (ast.Expr, error) {
	l, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.is("AND") {
		t := p.next()
		r, err := p.not()
		if err != nil {
			return nil, err
		}
		l = &ast.Binary{P: t.Pos, Op: "AND", L: l, R: r}
	}
	return l, nil
}

func (p *parser) not() (ast.Expr, error) {
	if p.is("NOT") {
		t := p.next()
		if err := p.enter(); err != nil {
			return nil, err
		}
		x, err := p.not()
		p.depth--
		if err != nil {
			return nil, err
		}
		return &ast.Unary{P: t.Pos, Op: "NOT", X: x}, nil
	}
	return p.cmp()
}

var cmpOps = []string{"=", "<>", "!=", "<", "<=", ">", ">="}

func (p *parser) cmp() (ast.Expr, error) {
	l, err := p.add()
	if err != nil {
		return nil, err
	}
	for {
		t := p.tok()
		op := ""
		if t.Kind == lexer.Punct {
			for _, o := range cmpOps {
				if t.Text == o {
					op = o
				}
			}
		}
		if op == "" {
			return l, nil
		}
		if op == "!=" {
			op = "<>"
		}
		p.next()
		r, err := p.add()
		if err != nil {
			return nil, err
		}
		l = &ast.Binary{P: t.Pos, Op: op, L: l, R: r}
	}
}

func (p *parser) add() (ast.Expr, error) {
	l, err := p.mul()
	if err != nil {
		return nil, err
	}
	for p.is("+") || p.is("-") {
		t := p.next()
		r, err := p.mul()
		if err != nil {
			return nil, err
		}
		l = &ast.Binary{P: t.Pos, Op: t.Text, L: l, R: r}
	}
	return l, nil
}

func (p *parser) mul() (ast.Expr, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.is("*") || p.is("/") || p.is("%") {
		t := p.next()
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = &ast.Binary{P: t.Pos, Op: t.Text, L: l, R: r}
	}
	return l, nil
}

func (p *parser) unary() (ast.Expr, error) {
	if p.is("-") || p.is("+") {
		t := p.next()
		if err := p.enter(); err != nil {
			return nil, err
		}
		x, err := p.unary()
		p.depth--
		if err != nil {
			return nil, err
		}
		if t.Text == "+" {
			return x, nil
		}
		if lit, ok := x.(*ast.Literal); ok {
			switch v := lit.Value.(type) {
			case int64:
				return &ast.Literal{P: t.Pos, Value: -v}, nil
			case float64:
				return &ast.Literal{P: t.Pos, Value: -v}, nil
			}
		}
		return &ast.Unary{P: t.Pos, Op: "-", X: x}, nil
	}
	return p.postfix()
}

func (p *parser) postfix() (ast.Expr, error) {
	x, err := p.primary()
	if err != nil {
		return nil, err
	}
	for {
		switch {
		case p.is("."):
			t := p.next()
			n := p.tok()
			if n.Kind != lexer.Ident && n.Kind != lexer.String {
				if n.Is("*") {
					return nil, p.errorf("a path cannot continue with *")
				}
				return nil, p.errorf("expected attribute name after '.', found %s", n)
			}
			p.next()
			x = &ast.Field{P: t.Pos, X: x, Name: n.Text}
		case p.is("["):
			t := p.next()
			i, err := p.expr()
			if err != nil {
				return nil, err
			}
			if _, err := p.expect("]"); err != nil {
				return nil, err
			}
			x = &ast.Index{P: t.Pos, X: x, Index: i}
		default:
			return x, nil
		}
	}
}

var reserved = map[string]bool{
	"select": true, "from": true, "where": true, "as": true, "and": true, "or": true,
	"not": true, "case": true, "when": true, "then": true, "else": true, "end": true,
}

func (p *parser) primary() (ast.Expr, error) {
	t := p.tok()
	switch t.Kind {
	case lexer.EOF:
		return nil, p.errorf("unexpected end of input, expected an expression")
	case lexer.Int:
		p.next()
		v := payload.Number(t.Text)
		if _, ok := v.(string); ok {
			return nil, &Error{t.Pos, "bad number " + t.Text}
		}
		return &ast.Literal{P: t.Pos, Value: v}, nil
	case lexer.Float:
		p.next()
		f, err := strconv.ParseFloat(t.Text, 64)
		if err != nil {
			return nil, &Error{t.Pos, "bad number " + t.Text}
		}
		return &ast.Literal{P: t.Pos, Value: f}, nil
	case lexer.String:
		p.next()
		return &ast.Literal{P: t.Pos, Value: t.Text}, nil
	case lexer.Punct:
		switch t.Text {
		case "*":
			p.next()
			return &ast.Star{P: t.Pos}, nil
		case "(":
			p.next()
			var e ast.Expr
			var err error
			if p.is("SELECT") {
				s, err2 := p.selectStmt(false)
				e, err = &ast.SubSelect{P: t.Pos, Select: s}, err2
			} else {
				e, err = p.expr()
			}
			if err != nil {
				return nil, err
			}
			if _, err := p.expect(")"); err != nil {
				return nil, err
			}
			return e, nil
		case "[":
			return p.array()
		case "{":
			return p.object()
		}
		return nil, p.errorf("unexpected %s, expected an expression", t)
	}
	// identifiers and keywords
	if !t.Quoted {
		switch strings.ToLower(t.Text) {
		case "true":
			p.next()
			return &ast.Literal{P: t.Pos, Value: true}, nil
		case "false":
			p.next()
			return &ast.Literal{P: t.Pos, Value: false}, nil
		case "null":
			p.next()
			return &ast.Literal{P: t.Pos, Value: nil}, nil
		case "select":
			s, err := p.selectStmt(false)
			if err != nil {
				return nil, err
			}
			return &ast.SubSelect{P: t.Pos, Select: s}, nil
		case "case":
			return p.caseExpr()
		case "interval":
			d, err := p.duration()
			if err != nil {
				return nil, err
			}
			return &ast.Interval{P: t.Pos, D: d}, nil
		}
		if p.peekTok(1).Is("(") {
			return p.call()
		}
		if reserved[strings.ToLower(t.Text)] {
			return nil, p.errorf("unexpected keyword %s, expected an expression", strings.ToUpper(t.Text))
		}
	}
	p.next()
	return &ast.Ident{P: t.Pos, Name: t.Text}, nil
}

func (p *parser) call() (ast.Expr, error) {
	t := p.next()
	p.next() // (
	c := &ast.Call{P: t.Pos, Name: t.Text}
	if strings.EqualFold(t.Text, "cast") {
		x, err := p.expr()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect("AS"); err != nil {
			return nil, err
		}
		ty := p.tok()
		if ty.Kind != lexer.Ident {
			return nil, p.errorf("expected a type name after AS, found %s", ty)
		}
		p.next()
		if _, err := p.expect(")"); err != nil {
			return nil, err
		}
		return &ast.Cast{P: t.Pos, X: x, Type: ty.Text}, nil
	}
	if p.is("*") && p.peekTok(1).Is(")") {
		p.next()
		p.next()
		c.Star = true
		return c, nil
	}
	for !p.is(")") {
		a, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.Args = append(c.Args, a)
		if !p.accept(",") {
			break
		}
	}
	if _, err := p.expect(")"); err != nil {
		return nil, err
	}
	return c, nil
}

func (p *parser) array() (ast.Expr, error) {
	t := p.next()
	a := &ast.Array{P: t.Pos}
	for !p.is("]") {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		a.Elems = append(a.Elems, e)
		if !p.accept(",") {
			break
		}
	}
	if _, err := p.expect("]"); err != nil {
		return nil, err
	}
	return a, nil
}

func (p *parser) object() (ast.Expr, error) {
	t := p.next()
	o := &ast.Object{P: t.Pos}
	for !p.is("}") {
		k := p.tok()
		if k.Kind != lexer.String && k.Kind != lexer.Ident {
			return nil, p.errorf("expected an object key, found %s", k)
		}
		p.next()
		if _, err := p.expect(":"); err != nil {
			return nil, err
		}
		v, err := p.expr()
		if err != nil {
			return nil, err
		}
		o.Keys = append(o.Keys, k.Text)
		o.Values = append(o.Values, v)
		if !p.accept(",") {
			break
		}
	}
	if _, err := p.expect("}"); err != nil {
		return nil, err
	}
	return o, nil
}

func (p *parser) caseExpr() (ast.Expr, error) {
	t := p.next()
	c := &ast.Case{P: t.Pos}
	if !p.is("WHEN") {
		s, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.Subject = s
	}
	for p.accept("WHEN") {
		w, err := p.expr()
		if err != nil {
			return nil, err
		}
		if _, err := p.expect("THEN"); err != nil {
			return nil, err
		}
		th, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.Whens = append(c.Whens, ast.When{Cond: w, Then: th})
	}
	if len(c.Whens) == 0 {
		return nil, p.errorf("CASE needs at least one WHEN")
	}
	if p.accept("ELSE") {
		e, err := p.expr()
		if err != nil {
			return nil, err
		}
		c.Else = e
	}
	if _, err := p.expect("END"); err != nil {
		return nil, err
	}
	return c, nil
}
