package policy

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestGlob(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"topic/a", "topic/a", true},
		{"topic/a", "topic/ab", false},
		{"topic/a", "topic/", false},
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "anything/at/all", true},
		{"topic/*", "topic/", true},
		{"topic/*", "topic", false},
		{"topic/a/*", "topic/a/b/c/d", true},
		{"topic/*/temp", "topic/x/y/temp", true},
		{"topic/*/temp", "topic/temp", false},
		{"topic/?", "topic/a", true},
		{"topic/?", "topic/", false},
		{"topic/?", "topic/ab", false},
		{"topic/?", "topic/é", true}, // one character, two bytes
		{"topic/??", "topic/é", false},
		{"topic/a?c", "topic/abc", true},
		{"*a*a*", "aa", true},
		{"*a*a*", "a", false},
		{"a*a", "a", false},
		{"a*a", "aa", true},
		{"*abc", "ababc", true},
		{"*a?c*", "xxabdc-aXc", true},
		{"*?b", "b", false},
		{"*?b", "ab", true},
		{"a**b", "ab", true},
		{"*x?y*", "x1x2y", true},
		{"thing/macdona1d-*", "thing/macdona1d-sensor123abc", true},
		{"thing/macdona1d-*", "thing/other-sensor123abc", false},
		{"topicfilter/a/+", "topicfilter/a/+", true},
		{"topicfilter/a/+", "topicfilter/a/b", false}, // + is not an MQTT wildcard
		{"topicfilter/a/#", "topicfilter/a/b/c", false},
		{"topicfilter/a/#", "topicfilter/a/#", true},
		{"topic/${*}", "topic/*", true}, // ${*} is a literal star
		{"topic/${*}", "topic/x", false},
		{"topic/${?}", "topic/?", true},
		{"topic/${?}", "topic/x", false},
		{"topic/${$}{x}", "topic/${x}", true},
	} {
		toks, err := parseTemplate(tc.pattern)
		if err != nil {
			t.Fatalf("%q: %v", tc.pattern, err)
		}
		if got := compileGlob(toks).match(tc.s); got != tc.want {
			t.Errorf("%q matches %q = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// TestVariableValuesAreLiteral: a value substituted for a variable is
// text, whatever characters it holds.
func TestVariableValuesAreLiteral(t *testing.T) {
	toks, err := parseTemplate("topic/${iot:ClientId}/x")
	if err != nil {
		t.Fatal(err)
	}
	r := &resolver{c: &Context{ClientID: "a*"}}
	resolved, _, ok := toks.resolve(r)
	if !ok {
		t.Fatal("not resolved")
	}
	g := compileGlob(resolved)
	if !g.match("topic/a*/x") || g.match("topic/abc/x") {
		t.Errorf("client id a* acts as a wildcard")
	}
}

// globRegexp is the reference: the same pattern as a regular expression.
func globRegexp(toks []token) *regexp.Regexp {
	var b strings.Builder
	b.WriteString(`^(?s:`)
	for _, t := range toks {
		switch t.kind {
		case tokLiteral:
			b.WriteString(regexp.QuoteMeta(t.text))
		case tokStar:
			b.WriteString(`.*`)
		case tokQuestion:
			b.WriteString(`.`)
		}
	}
	b.WriteString(`)$`)
	return regexp.MustCompile(b.String())
}

// FuzzMatch compares the matcher with a regular expression built from the
// same pattern, with ${iot:ClientId} standing for clientID (literal text).
func FuzzMatch(f *testing.F) {
	for _, s := range [][3]string{
		{"topic/greenhouse/${iot:ClientId}/*", "gh-1", "topic/greenhouse/gh-1/lux/raw"},
		{"topic/test/topic?/some", "", "topic/test/topic3/some"},
		{"*a?c*", "", "xxabdc-aXc"},
		{"topic/${iot:ClientId}", "*", "topic/x"},
		{"*?b*?*", "", "ééb"},
		{"topic/${*}${?}", "", "topic/*?"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, pattern, clientID, s string) {
		if !utf8.ValidString(pattern) || !utf8.ValidString(clientID) || !utf8.ValidString(s) {
			return // topics and policies are UTF-8
		}
		tmpl, err := parseTemplate(pattern)
		if err != nil {
			return
		}
		toks, _, ok := tmpl.resolve(&resolver{c: &Context{ClientID: clientID}})
		if !ok {
			return
		}
		got := compileGlob(toks).match(s)
		if want := globRegexp(toks).MatchString(s); got != want {
			t.Fatalf("pattern %q (client id %q) on %q: match = %v, regexp = %v", pattern, clientID, s, got, want)
		}
	})
}
