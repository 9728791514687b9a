package policy

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// condition is one key under one operator of a Condition block: the
// statement applies only when it holds.
type condition struct {
	op       *operator
	set      setQualifier
	ifExists bool
	key      key
	values   []template
	written  string // the operator as written, for explanations
}

type setQualifier uint8

const (
	setNone setQualifier = iota
	setAnyValue
	setAllValues
)

// operator is an IAM condition operator without its ForAnyValue:,
// ForAllValues: and IfExists decorations.
type operator struct {
	name    string
	family  family
	negated bool
	cmp     comparison
}

type family uint8

const (
	famString family = iota
	famNumeric
	famDate
	famBool
	famBinary
	famIP
	famARN
	famNull
)

type comparison uint8

const (
	cmpEqual comparison = iota
	cmpEqualFold
	cmpLike
	cmpLess
	cmpLessEqual
	cmpGreater
	cmpGreaterEqual
)

// operators are the IAM condition operators by lower-case name.
var operators = func() map[string]*operator {
	m := map[string]*operator{}
	add := func(name string, f family, negated bool, c comparison) {
		m[strings.ToLower(name)] = &operator{name: name, family: f, negated: negated, cmp: c}
	}
	add("StringEquals", famString, false, cmpEqual)
	add("StringNotEquals", famString, true, cmpEqual)
	add("StringEqualsIgnoreCase", famString, false, cmpEqualFold)
	add("StringNotEqualsIgnoreCase", famString, true, cmpEqualFold)
	add("StringLike", famString, false, cmpLike)
	add("StringNotLike", famString, true, cmpLike)
	for _, f := range []struct {
		prefix string
		family family
	}{{"Numeric", famNumeric}, {"Date", famDate}} {
		add(f.prefix+"Equals", f.family, false, cmpEqual)
		add(f.prefix+"NotEquals", f.family, true, cmpEqual)
		add(f.prefix+"LessThan", f.family, false, cmpLess)
		add(f.prefix+"LessThanEquals", f.family, false, cmpLessEqual)
		add(f.prefix+"GreaterThan", f.family, false, cmpGreater)
		add(f.prefix+"GreaterThanEquals", f.family, false, cmpGreaterEqual)
	}
	add("Bool", famBool, false, cmpEqual)
	add("BinaryEquals", famBinary, false, cmpEqual)
	add("IpAddress", famIP, false, cmpEqual)
	add("NotIpAddress", famIP, true, cmpEqual)
	add("ArnEquals", famARN, false, cmpLike)
	add("ArnLike", famARN, false, cmpLike)
	add("ArnNotEquals", famARN, true, cmpLike)
	add("ArnNotLike", famARN, true, cmpLike)
	add("Null", famNull, false, cmpEqual)
	return m
}()

// parseOperator reads an operator name such as
// "ForAnyValue:StringLikeIfExists". Names are case-insensitive.
func parseOperator(name string) (op *operator, set setQualifier, ifExists bool, err error) {
	base := name
	if q, rest, ok := strings.Cut(base, ":"); ok {
		switch strings.ToLower(q) {
		case "foranyvalue":
			set = setAnyValue
		case "forallvalues":
			set = setAllValues
		default:
			return nil, 0, false, fmt.Errorf("unknown condition operator %q (a qualifier is ForAnyValue: or ForAllValues:)", name)
		}
		base = rest
	}
	lower := strings.ToLower(base)
	if trimmed, ok := strings.CutSuffix(lower, "ifexists"); ok {
		lower, ifExists = trimmed, true
	}
	op = operators[lower]
	if op == nil {
		return nil, 0, false, fmt.Errorf("unknown condition operator %q", name)
	}
	if op.family == famNull && (ifExists || set != setNone) {
		return nil, 0, false, fmt.Errorf("condition operator %q: Null takes neither IfExists nor ForAnyValue/ForAllValues", name)
	}
	return op, set, ifExists, nil
}

// checkValue rejects a policy value the operator can never compare, when it
// has no variable to be resolved later.
func (op *operator) checkValue(t template) error {
	if t.hasVariables() {
		return nil
	}
	s := text(t)
	var ok bool
	switch op.family {
	case famNull, famBool:
		_, ok = parseBool(s)
		if !ok {
			return fmt.Errorf("%s value %q is not true or false", op.name, s)
		}
	case famNumeric:
		if _, ok = parseNumber(s); !ok {
			return fmt.Errorf("%s value %q is not a number", op.name, s)
		}
	case famDate:
		if _, ok = parseDate(s); !ok {
			return fmt.Errorf("%s value %q is not a date (ISO 8601 such as 2024-03-01T12:00:00Z, or epoch seconds)", op.name, s)
		}
	case famIP:
		if _, ok = parsePrefix(s); !ok {
			return fmt.Errorf("%s value %q is not an IP address or CIDR block", op.name, s)
		}
	case famBinary:
		if _, err := base64.StdEncoding.DecodeString(s); err != nil {
			return fmt.Errorf("%s value %q is not base64", op.name, s)
		}
	}
	return nil
}

// eval decides the condition for one connection. ok is false when a policy
// value names a variable that cannot be resolved (the statement then
// matches nothing); missing names it.
func (c *condition) eval(r *resolver) (holds bool, missing string, ok bool) {
	pol := make([][]token, len(c.values))
	for i, t := range c.values {
		toks, miss, ok := t.resolve(r)
		if !ok {
			return false, miss, false
		}
		pol[i] = toks
	}
	got := r.values(c.key)
	if c.op.family == famNull {
		for _, p := range pol {
			if absent, ok := parseBool(text(p)); ok && absent == (len(got) == 0) {
				return true, "", true
			}
		}
		return false, "", true
	}
	if len(got) == 0 {
		switch {
		case c.ifExists, c.set == setAllValues:
			return true, "", true
		case c.set == setAnyValue:
			return false, "", true
		}
		return c.op.negated, "", true
	}
	m := c.op.matcher(pol)
	test := func(v string) bool { return m(v) != c.op.negated }
	switch c.set {
	case setAllValues:
		for _, v := range got {
			if !test(v) {
				return false, "", true
			}
		}
		return true, "", true
	case setNone:
		if c.op.negated {
			// Without a qualifier a negated operator holds when no value
			// of the key matches.
			for _, v := range got {
				if m(v) {
					return false, "", true
				}
			}
			return true, "", true
		}
	}
	for _, v := range got {
		if test(v) {
			return true, "", true
		}
	}
	return false, "", true
}

// matcher returns the positive form of the operator over the policy's
// values: true when a request value matches any of them. Policy values the
// operator cannot read are skipped.
func (op *operator) matcher(pol [][]token) func(string) bool {
	switch op.family {
	case famString:
		switch op.cmp {
		case cmpLike:
			gs := make([]*glob, len(pol))
			for i, p := range pol {
				gs[i] = compileGlob(p)
			}
			return func(v string) bool {
				for _, g := range gs {
					if g.match(v) {
						return true
					}
				}
				return false
			}
		case cmpEqualFold:
			return anyText(pol, strings.EqualFold)
		}
		return anyText(pol, func(v, p string) bool { return v == p })
	case famBool:
		return anyText(pol, func(v, p string) bool {
			a, ok1 := parseBool(v)
			b, ok2 := parseBool(p)
			return ok1 && ok2 && a == b
		})
	case famNumeric:
		return anyText(pol, func(v, p string) bool {
			a, ok1 := parseNumber(v)
			b, ok2 := parseNumber(p)
			return ok1 && ok2 && compare(op.cmp, cmpFloat(a, b))
		})
	case famDate:
		return anyText(pol, func(v, p string) bool {
			a, ok1 := parseDate(v)
			b, ok2 := parseDate(p)
			return ok1 && ok2 && compare(op.cmp, a.Compare(b))
		})
	case famBinary:
		return anyText(pol, func(v, p string) bool {
			a, err1 := base64.StdEncoding.DecodeString(v)
			b, err2 := base64.StdEncoding.DecodeString(p)
			return err1 == nil && err2 == nil && bytes.Equal(a, b)
		})
	case famIP:
		return anyText(pol, func(v, p string) bool {
			addr, err := netip.ParseAddr(v)
			prefix, ok := parsePrefix(p)
			return err == nil && ok && prefix.Contains(addr.Unmap())
		})
	case famARN:
		arns := make([][arnParts]*glob, 0, len(pol))
		for _, p := range pol {
			if parts, ok := splitARN(p); ok {
				arns = append(arns, parts)
			}
		}
		return func(v string) bool {
			got, ok := splitARN([]token{{kind: tokLiteral, text: v}})
			if !ok {
				return false
			}
			for _, want := range arns {
				if arnMatch(want, got) {
					return true
				}
			}
			return false
		}
	}
	return func(string) bool { return false }
}

func anyText(pol [][]token, eq func(v, p string) bool) func(string) bool {
	ps := make([]string, len(pol))
	for i, p := range pol {
		ps[i] = text(p)
	}
	return func(v string) bool {
		for _, p := range ps {
			if eq(v, p) {
				return true
			}
		}
		return false
	}
}

func compare(c comparison, order int) bool {
	switch c {
	case cmpLess:
		return order < 0
	case cmpLessEqual:
		return order <= 0
	case cmpGreater:
		return order > 0
	case cmpGreaterEqual:
		return order >= 0
	}
	return order == 0
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parseBool reads "true" or "false" in any case.
func parseBool(s string) (bool, bool) {
	switch strings.ToLower(s) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// parseNumber reads a decimal number: digits, sign, point and exponent only
// (no Inf, NaN or hexadecimal).
func parseNumber(s string) (float64, bool) {
	if s == "" || strings.Trim(s, "0123456789+-.eE") != "" {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// parseDate reads an ISO 8601 date or time, or epoch seconds.
func parseDate(s string) (time.Time, bool) {
	if s != "" && strings.Trim(s, "0123456789") == "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, false
		}
		return time.Unix(n, 0), true
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// parsePrefix reads a CIDR block or a bare address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}

// arnParts is the number of colon-separated parts of an ARN:
// arn:partition:service:region:account:resource (the resource may hold
// more colons).
const arnParts = 6

// splitARN splits an ARN pattern into its six parts, each a glob.
func splitARN(toks []token) ([arnParts]*glob, bool) {
	var out [arnParts]*glob
	var cur []token
	part := 0
	for _, t := range toks {
		if t.kind != tokLiteral || part == arnParts-1 {
			cur = append(cur, t)
			continue
		}
		rest := t.text
		for part < arnParts-1 {
			before, after, found := strings.Cut(rest, ":")
			if !found {
				break
			}
			cur = append(cur, token{kind: tokLiteral, text: before})
			out[part] = compileGlob(cur)
			cur = nil
			part++
			rest = after
		}
		cur = append(cur, token{kind: tokLiteral, text: rest})
	}
	if part != arnParts-1 {
		return out, false
	}
	out[part] = compileGlob(cur)
	return out, true
}

// arnMatch matches an ARN pattern's parts against a literal ARN's parts.
func arnMatch(want, got [arnParts]*glob) bool {
	for i := range want {
		if !want[i].match(got[i].exact) {
			return false
		}
	}
	return true
}
