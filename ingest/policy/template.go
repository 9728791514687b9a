package policy

import (
	"fmt"
	"strings"
)

// A template is a resource or condition value as written: literal text,
// wildcards and policy variables. Compile replaces the variables with the
// connection's values.
type template []token

// variable is one ${name} or ${name, 'default'}.
type variable struct {
	key    key
	def    string
	hasDef bool
}

// parseTemplate splits s into literal text, * and ? (wildcards only where the
// value is matched as a pattern) and ${...} policy variables. ${*}, ${?} and
// ${$} are the literal characters.
func parseTemplate(s string) (template, error) {
	var t template
	lit := func(text string) {
		if n := len(t); n > 0 && t[n-1].kind == tokLiteral {
			t[n-1].text += text
			return
		}
		t = append(t, token{kind: tokLiteral, text: text})
	}
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "${"):
			v, special, n, err := parseVariable(s[i:])
			if err != nil {
				return nil, err
			}
			i += n
			if special != "" {
				lit(special)
				continue
			}
			t = append(t, token{kind: tokVariable, v: v})
		case s[i] == '*':
			t = append(t, token{kind: tokStar})
			i++
		case s[i] == '?':
			t = append(t, token{kind: tokQuestion})
			i++
		default:
			j := i + 1
			for j < len(s) && s[j] != '*' && s[j] != '?' && !strings.HasPrefix(s[j:], "${") {
				j++
			}
			lit(s[i:j])
			i = j
		}
	}
	return t, nil
}

// parseVariable reads the ${...} at the start of s and returns the variable
// (or the literal character ${*}, ${?} or ${$} stand for) and its length.
func parseVariable(s string) (v *variable, special string, n int, err error) {
	i := 2
	j := i
	for j < len(s) && s[j] != '}' && s[j] != ',' {
		j++
	}
	if j == len(s) {
		return nil, "", 0, fmt.Errorf("policy variable %q has no closing }", s)
	}
	name := strings.TrimSpace(s[i:j])
	if name == "" {
		return nil, "", 0, fmt.Errorf("empty policy variable in %q", s)
	}
	v = &variable{key: parseKey(name)}
	if s[j] == ',' {
		def, k, err := parseDefault(s, j+1)
		if err != nil {
			return nil, "", 0, err
		}
		v.def, v.hasDef = def, true
		j = k
	}
	if name == "*" || name == "?" || name == "$" {
		if v.hasDef {
			return nil, "", 0, fmt.Errorf("${%s} takes no default value", name)
		}
		return nil, name, j + 1, nil
	}
	return v, "", j + 1, nil
}

// parseDefault reads a quoted default value and the closing } from s[i:]
// (a quote inside the value is written twice) and returns the value and
// the index of the }.
func parseDefault(s string, i int) (string, int, error) {
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i == len(s) || s[i] != '\'' {
		return "", 0, fmt.Errorf("policy variable %q: the default value after the comma must be quoted with '", s)
	}
	i++
	var b strings.Builder
	for {
		k := strings.IndexByte(s[i:], '\'')
		if k < 0 {
			return "", 0, fmt.Errorf("policy variable %q: unterminated default value", s)
		}
		b.WriteString(s[i : i+k])
		i += k + 1
		if i < len(s) && s[i] == '\'' {
			b.WriteByte('\'')
			i++
			continue
		}
		break
	}
	for i < len(s) && s[i] == ' ' {
		i++
	}
	if i == len(s) || s[i] != '}' {
		return "", 0, fmt.Errorf("policy variable %q: expected } after the default value", s)
	}
	return b.String(), i, nil
}

// hasVariables reports whether t needs a connection to be resolved.
func (t template) hasVariables() bool {
	for _, tok := range t {
		if tok.kind == tokVariable {
			return true
		}
	}
	return false
}

// resolve replaces t's variables with literal text from r. ok is false when
// a variable has no value and no default: its statement matches nothing.
// The failing variable's name is returned for explanations.
func (t template) resolve(r *resolver) (out []token, missing string, ok bool) {
	if !t.hasVariables() {
		return t, "", true
	}
	out = make([]token, 0, len(t))
	for _, tok := range t {
		if tok.kind != tokVariable {
			out = append(out, tok)
			continue
		}
		val, ok := r.substitute(tok.v.key)
		if !ok {
			if !tok.v.hasDef {
				return nil, tok.v.key.name, false
			}
			val = tok.v.def
		}
		out = append(out, token{kind: tokLiteral, text: val})
	}
	return out, "", true
}

// text renders resolved tokens as plain text, * and ? included, for the
// operators that do not match patterns (StringEquals, NumericEquals, ...).
func text(toks []token) string {
	if len(toks) == 1 && toks[0].kind == tokLiteral {
		return toks[0].text
	}
	var b strings.Builder
	for _, t := range toks {
		switch t.kind {
		case tokLiteral:
			b.WriteString(t.text)
		case tokStar:
			b.WriteByte('*')
		case tokQuestion:
			b.WriteByte('?')
		}
	}
	return b.String()
}

// variables lists the names of t's variables.
func (t template) variables() []key {
	var ks []key
	for _, tok := range t {
		if tok.kind == tokVariable {
			ks = append(ks, tok.v.key)
		}
	}
	return ks
}
