package lexer

import (
	"strings"
	"testing"
)

func TestLex(t *testing.T) {
	tests := []struct {
		src  string
		want string // kind:text tokens joined by spaces
	}{
		{"SELECT a FROM 'x/+'", "Ident:SELECT Ident:a Ident:FROM String:x/+"},
		{"a.b[0] <> 1.5e3", "Ident:a Punct:. Ident:b Punct:[ Int:0 Punct:] Punct:<> Float:1.5e3"},
		{"x != -2 -- comment\n/* block */ y", "Ident:x Punct:!= Punct:- Int:2 Ident:y"},
		{`'it''s' "quoted id" 'a\nb'`, "String:it's Ident:quoted id String:a\nb"},
		{"f(a => {'k': [1]});", "Ident:f Punct:( Ident:a Punct:=> Punct:{ String:k Punct:: Punct:[ Int:1 Punct:] Punct:} Punct:) Punct:;"},
		{".5 >= 3.", "Float:.5 Punct:>= Int:3 Punct:."},
		{"héllo_1", "Ident:héllo_1"},
	}
	for _, tt := range tests {
		toks, err := Lex(tt.src)
		if err != nil {
			t.Errorf("Lex(%q): %v", tt.src, err)
			continue
		}
		var got []string
		for _, tok := range toks[:len(toks)-1] {
			got = append(got, tok.Kind.name()+":"+tok.Text)
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("Lex(%q) = %q, want %q", tt.src, strings.Join(got, " "), tt.want)
		}
		if toks[len(toks)-1].Kind != EOF {
			t.Errorf("Lex(%q): last token is not EOF", tt.src)
		}
	}
}

func (k Kind) name() string {
	return [...]string{"EOF", "Ident", "Int", "Float", "String", "Punct"}[k]
}

func TestLexPositions(t *testing.T) {
	toks, err := Lex("SELECT\n  a,\n\tb")
	if err != nil {
		t.Fatal(err)
	}
	want := []Pos{{1, 1}, {2, 3}, {2, 4}, {3, 2}}
	for i, p := range want {
		if toks[i].Pos != p {
			t.Errorf("token %d %q at %v, want %v", i, toks[i].Text, toks[i].Pos, p)
		}
	}
}

func TestLexErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"SELECT 'abc", "1:8: unterminated quoted text"},
		{"a /* x", "1:3: unterminated comment"},
		{"a\n  #", "2:3: unexpected character '#'"},
		{"a ? b", "1:3: unexpected character '?'"},
	}
	for _, tt := range tests {
		_, err := Lex(tt.src)
		if err == nil || err.Error() != tt.want {
			t.Errorf("Lex(%q) error = %v, want %s", tt.src, err, tt.want)
		}
	}
}

func FuzzLex(f *testing.F) {
	for _, s := range []string{"SELECT * FROM 'a/#'", "'x''y'", "/* a */ -- b\n1.5e+3", "\"q\" `b`", "a=>b<>c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		toks, err := Lex(src)
		if err != nil {
			return
		}
		if len(toks) == 0 || toks[len(toks)-1].Kind != EOF {
			t.Fatalf("Lex(%q) does not end with EOF", src)
		}
	})
}
