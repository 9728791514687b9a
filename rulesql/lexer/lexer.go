// Package lexer splits rule source text into tokens for the parser.
package lexer

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kind is a token kind.
type Kind uint8

// Token kinds.
const (
	EOF Kind = iota
	Ident
	Int
	Float
	String
	Punct // one of ( ) [ ] { } , . ; : * + - / % = <> != < <= > >= =>
)

var kindNames = [...]string{"end of input", "identifier", "integer", "number", "string", "punctuation"}

// String names the kind.
func (k Kind) String() string { return kindNames[k] }

// Pos is a position in the source: 1-based line and column (in runes).
type Pos struct {
	Line, Col int
}

// String formats the position as line:col.
func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

// Token is one lexical token. For String tokens Text is the unquoted
// value; for Ident it is the name as written (Quoted tells whether it was
// written in double quotes); otherwise the source text.
type Token struct {
	Kind   Kind
	Text   string
	Quoted bool
	Pos    Pos
}

// Is reports whether t is the punctuation p or the keyword p (keywords
// compare case-insensitively, and never match a quoted identifier).
func (t Token) Is(p string) bool {
	switch t.Kind {
	case Punct:
		return t.Text == p
	case Ident:
		return !t.Quoted && strings.EqualFold(t.Text, p)
	}
	return false
}

// String describes the token for error messages.
func (t Token) String() string {
	switch t.Kind {
	case EOF:
		return "end of input"
	case String:
		return fmt.Sprintf("string '%s'", t.Text)
	}
	return fmt.Sprintf("%q", t.Text)
}

// Error is a lexical error at a position.
type Error struct {
	Pos Pos
	Msg string
}

// Error formats the error as line:col: message.
func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Pos, e.Msg) }

// Lex splits src into tokens, ending with an EOF token. Comments (-- to
// the end of the line, /* ... */) and white space are skipped.
func Lex(src string) ([]Token, error) {
	l := lexer{src: src, line: 1, col: 1}
	var toks []Token
	for {
		t, err := l.next()
		if err != nil {
			return nil, err
		}
		toks = append(toks, t)
		if t.Kind == EOF {
			return toks, nil
		}
	}
}

type lexer struct {
	src       string
	off       int
	line, col int
}

func (l *lexer) peek(n int) byte {
	if l.off+n < len(l.src) {
		return l.src[l.off+n]
	}
	return 0
}

func (l *lexer) advance() rune {
	r, size := utf8.DecodeRuneInString(l.src[l.off:])
	l.off += size
	if r == '\n' {
		l.line++
		l.col = 1
	} else {
		l.col++
	}
	return r
}

func (l *lexer) pos() Pos { return Pos{l.line, l.col} }

func (l *lexer) skip() error {
	for l.off < len(l.src) {
		c := l.src[l.off]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			l.advance()
		case c == '-' && l.peek(1) == '-':
			for l.off < len(l.src) && l.src[l.off] != '\n' {
				l.advance()
			}
		case c == '/' && l.peek(1) == '*':
			p := l.pos()
			l.advance()
			l.advance()
			for {
				if l.off >= len(l.src) {
					return &Error{p, "unterminated comment"}
				}
				if l.src[l.off] == '*' && l.peek(1) == '/' {
					l.advance()
					l.advance()
					break
				}
				l.advance()
			}
		default:
			return nil
		}
	}
	return nil
}

var puncts2 = []string{"<>", "!=", "<=", ">=", "=>"}

func (l *lexer) next() (Token, error) {
	if err := l.skip(); err != nil {
		return Token{}, err
	}
	p := l.pos()
	if l.off >= len(l.src) {
		return Token{Kind: EOF, Pos: p}, nil
	}
	c := l.src[l.off]
	switch {
	case c == '\'' || c == '"' || c == '`':
		s, err := l.quoted(c)
		if err != nil {
			return Token{}, err
		}
		if c == '\'' {
			return Token{Kind: String, Text: s, Pos: p}, nil
		}
		// "..." and `...` are quoted identifiers, as in ANSI SQL; AWS
		// also accepts "..." for strings, which the parser allows where
		// an identifier cannot stand.
		return Token{Kind: Ident, Text: s, Quoted: true, Pos: p}, nil
	case c >= '0' && c <= '9' || c == '.' && l.peek(1) >= '0' && l.peek(1) <= '9':
		return l.number(p)
	case c == '_' || c == '$' || c < utf8.RuneSelf && unicode.IsLetter(rune(c)) || c >= utf8.RuneSelf:
		start := l.off
		for l.off < len(l.src) {
			r, _ := utf8.DecodeRuneInString(l.src[l.off:])
			if r == '_' || r == '$' || unicode.IsLetter(r) || unicode.IsDigit(r) {
				l.advance()
				continue
			}
			break
		}
		if l.off == start {
			r := l.advance()
			return Token{}, &Error{p, fmt.Sprintf("unexpected character %q", r)}
		}
		return Token{Kind: Ident, Text: l.src[start:l.off], Pos: p}, nil
	}
	if l.off+1 < len(l.src) {
		two := l.src[l.off : l.off+2]
		for _, s := range puncts2 {
			if two == s {
				l.advance()
				l.advance()
				return Token{Kind: Punct, Text: s, Pos: p}, nil
			}
		}
	}
	if strings.IndexByte("()[]{},.;:*+-/%=<>", c) >= 0 {
		l.advance()
		return Token{Kind: Punct, Text: string(c), Pos: p}, nil
	}
	r := l.advance()
	return Token{}, &Error{p, fmt.Sprintf("unexpected character %q", r)}
}

func (l *lexer) quoted(q byte) (string, error) {
	p := l.pos()
	l.advance()
	var b strings.Builder
	for {
		if l.off >= len(l.src) {
			return "", &Error{p, "unterminated quoted text"}
		}
		c := l.src[l.off]
		if c == q {
			if l.peek(1) == q { // doubled quote
				b.WriteByte(q)
				l.advance()
				l.advance()
				continue
			}
			l.advance()
			return b.String(), nil
		}
		if c == '\\' && l.off+1 < len(l.src) {
			l.advance()
			e := l.advance()
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			default:
				b.WriteRune(e)
			}
			continue
		}
		b.WriteRune(l.advance())
	}
}

func (l *lexer) number(p Pos) (Token, error) {
	start := l.off
	isFloat := false
	for l.off < len(l.src) && l.src[l.off] >= '0' && l.src[l.off] <= '9' {
		l.advance()
	}
	if l.off < len(l.src) && l.src[l.off] == '.' && l.peek(1) >= '0' && l.peek(1) <= '9' {
		isFloat = true
		l.advance()
		for l.off < len(l.src) && l.src[l.off] >= '0' && l.src[l.off] <= '9' {
			l.advance()
		}
	}
	if l.off < len(l.src) && (l.src[l.off] == 'e' || l.src[l.off] == 'E') {
		n := 1
		if l.peek(1) == '+' || l.peek(1) == '-' {
			n = 2
		}
		if d := l.peek(n); d >= '0' && d <= '9' {
			isFloat = true
			for range n {
				l.advance()
			}
			for l.off < len(l.src) && l.src[l.off] >= '0' && l.src[l.off] <= '9' {
				l.advance()
			}
		}
	}
	k := Int
	if isFloat {
		k = Float
	}
	return Token{Kind: k, Text: l.src[start:l.off], Pos: p}, nil
}
