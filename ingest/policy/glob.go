package policy

import (
	"strings"
	"unicode/utf8"
)

// A token is one piece of a resource or condition value as the policy wrote
// it: literal text, the wildcards * and ?, or a policy variable.
type token struct {
	kind tokenKind
	text string    // tokLiteral
	v    *variable // tokVariable
}

type tokenKind uint8

const (
	tokLiteral  tokenKind = iota
	tokStar               // any run of characters, including none and '/'
	tokQuestion           // exactly one character
	tokVariable           // ${...}, replaced by literal text when compiled
)

// glob is a compiled pattern over literal text, * and ?. Text that came from
// a policy variable or from ${*}, ${?} and ${$} is literal: a client id of
// "a*" matches only the topic it names.
type glob struct {
	exact string // the whole pattern when it has no wildcard
	wild  bool
	head  chunk   // before the first *, anchored at the start
	mid   []chunk // between stars, leftmost first
	tail  chunk   // after the last *, anchored at the end
	stars bool
}

// A chunk is a run of literal text and ? with no *; it always spans the same
// number of characters, which is what makes the leftmost placement of each
// middle chunk correct.
type chunk []element

// An element is literal text, or one ? when lit is empty.
type element struct {
	lit string
}

func (e element) question() bool { return e.lit == "" }

// compileGlob builds the matcher of a pattern made of literal, star and
// question tokens (variables already replaced).
func compileGlob(toks []token) *glob {
	g := &glob{}
	var cur chunk
	var chunks []chunk
	for _, t := range toks {
		switch t.kind {
		case tokLiteral:
			if t.text == "" {
				continue
			}
			if n := len(cur); n > 0 && !cur[n-1].question() {
				cur[n-1].lit += t.text
			} else {
				cur = append(cur, element{lit: t.text})
			}
		case tokQuestion:
			g.wild = true
			cur = append(cur, element{})
		case tokStar:
			g.wild = true
			g.stars = true
			chunks = append(chunks, cur)
			cur = nil
		}
	}
	chunks = append(chunks, cur)
	if !g.wild {
		if len(cur) == 1 {
			g.exact = cur[0].lit
		}
		return g
	}
	g.head = chunks[0]
	if g.stars {
		g.tail = chunks[len(chunks)-1]
		for _, c := range chunks[1 : len(chunks)-1] {
			if len(c) > 0 { // ** is *
				g.mid = append(g.mid, c)
			}
		}
	}
	return g
}

// match reports whether s is matched by the whole pattern.
func (g *glob) match(s string) bool {
	if !g.wild {
		return s == g.exact
	}
	i, ok := g.head.matchAt(s, 0)
	if !ok {
		return false
	}
	if !g.stars {
		return i == len(s)
	}
	j, ok := g.tail.matchBefore(s, len(s))
	if !ok || j < i {
		return false
	}
	window := s[:j]
	for _, c := range g.mid {
		end, ok := c.find(window, i)
		if !ok {
			return false
		}
		i = end
	}
	return true
}

// matchAt matches c at s[i:] and returns where the match ends.
func (c chunk) matchAt(s string, i int) (int, bool) {
	for _, e := range c {
		if e.question() {
			if i >= len(s) {
				return 0, false
			}
			_, n := utf8.DecodeRuneInString(s[i:])
			i += n
			continue
		}
		if !strings.HasPrefix(s[i:], e.lit) {
			return 0, false
		}
		i += len(e.lit)
	}
	return i, true
}

// matchBefore matches c so that it ends exactly at s[:end] and returns where
// the match starts.
func (c chunk) matchBefore(s string, end int) (int, bool) {
	for k := len(c) - 1; k >= 0; k-- {
		e := c[k]
		if e.question() {
			if end <= 0 {
				return 0, false
			}
			_, n := utf8.DecodeLastRuneInString(s[:end])
			end -= n
			continue
		}
		if !strings.HasSuffix(s[:end], e.lit) {
			return 0, false
		}
		end -= len(e.lit)
	}
	return end, true
}

// find returns the end of the leftmost match of c in s at or after from.
func (c chunk) find(s string, from int) (int, bool) {
	if !c[0].question() {
		lit := c[0].lit
		for from <= len(s) {
			k := strings.Index(s[from:], lit)
			if k < 0 {
				return 0, false
			}
			if end, ok := c.matchAt(s, from+k); ok {
				return end, true
			}
			_, n := utf8.DecodeRuneInString(s[from+k:])
			from += k + n
		}
		return 0, false
	}
	for from < len(s) {
		if end, ok := c.matchAt(s, from); ok {
			return end, true
		}
		_, n := utf8.DecodeRuneInString(s[from:])
		from += n
	}
	return 0, false
}
