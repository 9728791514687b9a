package rulesql

import (
	"fmt"
	"strings"

	"github.com/iotpipe/iotpipe/rulesql/ast"
	"github.com/iotpipe/iotpipe/rulesql/compile"
	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/parser"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

// Template is a string with ${expr} substitutions, compiled once. As in
// AWS, each expression is evaluated against the incoming message and
// rendered as text: Strings as they are, Undefined as the empty string,
// everything else as JSON. "$${" writes a literal "${".
type Template struct {
	// Source is the template as written.
	Source string
	parts  []templatePart
}

type templatePart struct {
	text string
	expr compile.Fn
}

// parseTemplate compiles s; pos is where the string starts in the file.
func parseTemplate(s string, pos ast.Pos, rule string) (*Template, error) {
	t := &Template{Source: s}
	var lit strings.Builder
	for i := 0; i < len(s); {
		if strings.HasPrefix(s[i:], "$${") {
			lit.WriteString("${")
			i += 3
			continue
		}
		if !strings.HasPrefix(s[i:], "${") {
			lit.WriteByte(s[i])
			i++
			continue
		}
		end := templateEnd(s, i+2)
		if end < 0 {
			return nil, &compile.Error{Pos: ast.Pos{Line: pos.Line, Col: pos.Col + 1 + i}, Msg: "unterminated ${ in template"}
		}
		src := s[i+2 : end]
		e, err := parser.ParseExpr(src)
		if err == nil {
			var fn compile.Fn
			fn, err = compile.Expr(e, rule)
			if err == nil {
				if lit.Len() > 0 {
					t.parts = append(t.parts, templatePart{text: lit.String()})
					lit.Reset()
				}
				t.parts = append(t.parts, templatePart{expr: fn})
				i = end + 1
				continue
			}
		}
		return nil, &compile.Error{Pos: ast.Pos{Line: pos.Line, Col: pos.Col + 1 + i}, Msg: fmt.Sprintf("in template ${%s}: %v", src, err)}
	}
	if lit.Len() > 0 || len(t.parts) == 0 {
		t.parts = append(t.parts, templatePart{text: lit.String()})
	}
	return t, nil
}

// templateEnd finds the '}' closing a ${ at from, skipping quoted strings
// and nested braces; -1 if there is none.
func templateEnd(s string, from int) int {
	depth := 0
	for i := from; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'', '"':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return -1
			}
			i += j + 1
		case '{':
			depth++
		case '}':
			if depth == 0 {
				return i
			}
			depth--
		}
	}
	return -1
}

func (t *Template) render(c *env.Ctx) string {
	if len(t.parts) == 1 && t.parts[0].expr == nil {
		return t.parts[0].text
	}
	var b strings.Builder
	for _, p := range t.parts {
		if p.expr == nil {
			b.WriteString(p.text)
			continue
		}
		b.WriteString(value.Text(p.expr(c)))
	}
	return b.String()
}

// Render evaluates the template against an event.
func (t *Template) Render(in *Input) string {
	return t.render(&env.Ctx{In: in, Doc: in.Payload})
}
