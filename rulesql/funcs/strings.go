package funcs

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

func str1(f func(string) any) Impl {
	return func(_ *env.Ctx, a []any) any {
		s, ok := value.ToString(a[0])
		if !ok {
			return value.Undefined
		}
		return f(s)
	}
}

func str2(f func(a, b string) any) Impl {
	return func(_ *env.Ctx, a []any) any {
		x, ok1 := value.ToString(a[0])
		y, ok2 := value.ToString(a[1])
		if !ok1 || !ok2 {
			return value.Undefined
		}
		return f(x, y)
	}
}

// regexImpl builds an Impl around a compiled pattern taken from argument
// 1, compiling it once when the pattern is a constant.
func regexImpl(f func(s string, re *regexp.Regexp, rest []any) any) (Impl, func([]Const) (Impl, error)) {
	impl := func(_ *env.Ctx, a []any) any {
		s, ok1 := value.ToString(a[0])
		p, ok2 := a[1].(string)
		if !ok1 || !ok2 {
			return value.Undefined
		}
		re, err := regexp.Compile(p)
		if err != nil {
			return value.Undefined
		}
		return f(s, re, a[2:])
	}
	prep := func(c []Const) (Impl, error) {
		if !c[1].OK {
			return nil, nil
		}
		p, ok := c[1].Value.(string)
		if !ok {
			return nil, fmt.Errorf("pattern must be a string")
		}
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("bad regular expression: %v", err)
		}
		return func(_ *env.Ctx, a []any) any {
			s, ok := value.ToString(a[0])
			if !ok {
				return value.Undefined
			}
			return f(s, re, a[2:])
		}, nil
	}
	return impl, prep
}

func pad(left bool) Impl {
	return func(_ *env.Ctx, a []any) any {
		s, ok1 := value.ToString(a[0])
		n, ok2 := value.ToInt(a[1])
		if !ok1 || !ok2 || n < 0 || n > 1<<20 {
			return value.Undefined
		}
		p := strings.Repeat(" ", int(n))
		if left {
			return p + s
		}
		return s + p
	}
}

func substring(_ *env.Ctx, a []any) any {
	s, ok := value.ToString(a[0])
	if !ok {
		return value.Undefined
	}
	r := []rune(s)
	start, ok := value.ToInt(a[1])
	if !ok {
		return value.Undefined
	}
	end := int64(len(r))
	if len(a) > 2 {
		if end, ok = value.ToInt(a[2]); !ok {
			return value.Undefined
		}
	}
	start = max(start, 0)
	end = min(end, int64(len(r)))
	if start >= end {
		return ""
	}
	return string(r[start:end])
}

func concat(_ *env.Ctx, a []any) any {
	var arr []any
	isArr := false
	for _, x := range a {
		if _, ok := x.([]any); ok {
			isArr = true
		}
		if value.IsUndefined(x) {
			return value.Undefined
		}
	}
	if isArr {
		for _, x := range a {
			if xs, ok := x.([]any); ok {
				arr = append(arr, xs...)
			} else {
				arr = append(arr, x)
			}
		}
		if arr == nil {
			arr = []any{}
		}
		return arr
	}
	var b strings.Builder
	for _, x := range a {
		s, ok := value.ToString(x)
		if !ok {
			if x == nil {
				s = "null"
			} else {
				return value.Undefined
			}
		}
		b.WriteString(s)
	}
	return b.String()
}

func stringFuncs() []*Func {
	matchImpl, matchPrep := regexImpl(func(s string, re *regexp.Regexp, _ []any) any { return re.MatchString(s) })
	replImpl, replPrep := regexImpl(func(s string, re *regexp.Regexp, rest []any) any {
		r, ok := value.ToString(rest[0])
		if !ok {
			return value.Undefined
		}
		return re.ReplaceAllString(s, r)
	})
	substrImpl, substrPrep := regexImpl(func(s string, re *regexp.Regexp, _ []any) any {
		m := re.FindStringIndex(s)
		if m == nil {
			return ""
		}
		return s[m[0]:m[1]]
	})
	return []*Func{
		{Name: "chr", Min: 1, Max: 1, Doc: "the character of a code point", Example: "chr(65) = 'A'",
			Impl: func(_ *env.Ctx, a []any) any {
				n, ok := intArg(a[0])
				if !ok || n < 0 || n > utf8.MaxRune {
					return value.Undefined
				}
				return string(rune(n))
			}},
		{Name: "concat", Min: 1, Max: -1, Doc: "concatenate Strings, or Arrays (other values are appended to arrays)", Example: "concat('a', 'b', 1) = 'ab1'; concat([1], [2]) = [1,2]", Impl: concat},
		{Name: "decode", Min: 2, Max: 2, Doc: "decode a value; scheme 'base64' gives the decoded String", Example: "decode('aGVsbG8=', 'base64') = 'hello'",
			Impl: func(_ *env.Ctx, a []any) any {
				s, ok1 := value.ToString(a[0])
				scheme, ok2 := a[1].(string)
				if !ok1 || !ok2 || !strings.EqualFold(scheme, "base64") {
					return value.Undefined
				}
				b, err := base64.StdEncoding.DecodeString(s)
				if err != nil {
					return value.Undefined
				}
				return string(b)
			}},
		{Name: "encode", Min: 2, Max: 2, Doc: "encode a value; scheme 'base64'; encode(*, 'base64') encodes the raw payload (binary or JSON)", Example: "encode('hello', 'base64') = 'aGVsbG8='",
			Impl: func(_ *env.Ctx, a []any) any {
				scheme, ok := a[1].(string)
				if !ok || !strings.EqualFold(scheme, "base64") {
					return value.Undefined
				}
				if b, ok := a[0].([]byte); ok {
					return base64.StdEncoding.EncodeToString(b)
				}
				s, ok := value.ToString(a[0])
				if !ok {
					return value.Undefined
				}
				return base64.StdEncoding.EncodeToString([]byte(s))
			}},
		{Name: "endswith", Min: 2, Max: 2, Doc: "whether the first String ends with the second", Example: "endswith('cat', 'at') = true",
			Impl: str2(func(a, b string) any { return strings.HasSuffix(a, b) })},
		{Name: "indexof", Min: 2, Max: 2, Doc: "first index (in characters) of the second String in the first, or -1", Example: "indexof('abcd', 'cd') = 2",
			Impl: str2(func(a, b string) any {
				i := strings.Index(a, b)
				if i < 0 {
					return int64(-1)
				}
				return int64(utf8.RuneCountInString(a[:i]))
			})},
		{Name: "length", Min: 1, Max: 1, Doc: "number of characters of a String (elements of an Array)", Example: "length('hi') = 2",
			Impl: func(_ *env.Ctx, a []any) any {
				if arr, ok := a[0].([]any); ok {
					return int64(len(arr))
				}
				s, ok := value.ToString(a[0])
				if !ok {
					return value.Undefined
				}
				return int64(utf8.RuneCountInString(s))
			}},
		{Name: "lower", Min: 1, Max: 1, Doc: "lower case", Example: "lower('Hello') = 'hello'", Impl: str1(func(s string) any { return strings.ToLower(s) })},
		{Name: "lpad", Min: 2, Max: 2, Doc: "prefix the String with n spaces", Example: "lpad('hi', 2) = '  hi'", Impl: pad(true)},
		{Name: "ltrim", Min: 1, Max: 1, Doc: "remove leading white space", Example: "ltrim('  hi') = 'hi'", Impl: str1(func(s string) any { return strings.TrimLeft(s, " \t\n\r") })},
		{Name: "numbytes", Min: 1, Max: 1, Doc: "number of bytes of the UTF-8 encoding", Example: "numbytes('é') = 2", Impl: str1(func(s string) any { return int64(len(s)) })},
		{Name: "regexp_matches", Min: 2, Max: 2, Doc: "whether the String contains a match of the pattern", Example: "regexp_matches('aaa', 'a+') = true", Impl: matchImpl, Prepare: matchPrep},
		{Name: "regexp_replace", Min: 3, Max: 3, Doc: "replace every match of the pattern ($1 refers to a group)", Example: "regexp_replace('abc', 'b', 'X') = 'aXc'", Impl: replImpl, Prepare: replPrep},
		{Name: "regexp_substr", Min: 2, Max: 2, Doc: "the first match of the pattern, or ''", Example: "regexp_substr('hihi1', 'i1') = 'i1'", Impl: substrImpl, Prepare: substrPrep},
		{Name: "replace", Min: 3, Max: 3, Doc: "replace every occurrence of the second String by the third", Example: "replace('abcd', 'bc', 'x') = 'axd'",
			Impl: func(_ *env.Ctx, a []any) any {
				s, ok1 := value.ToString(a[0])
				o, ok2 := value.ToString(a[1])
				n, ok3 := value.ToString(a[2])
				if !ok1 || !ok2 || !ok3 {
					return value.Undefined
				}
				return strings.ReplaceAll(s, o, n)
			}},
		{Name: "rpad", Min: 2, Max: 2, Doc: "suffix the String with n spaces", Example: "rpad('hi', 2) = 'hi  '", Impl: pad(false)},
		{Name: "rtrim", Min: 1, Max: 1, Doc: "remove trailing white space", Example: "rtrim('hi  ') = 'hi'", Impl: str1(func(s string) any { return strings.TrimRight(s, " \t\n\r") })},
		{Name: "startswith", Min: 2, Max: 2, Doc: "whether the first String starts with the second", Example: "startswith('cat', 'ca') = true",
			Impl: str2(func(a, b string) any { return strings.HasPrefix(a, b) })},
		{Name: "substring", Min: 2, Max: 3, Doc: "characters from start (0-based) to end (exclusive)", Example: "substring('012345', 1, 3) = '12'", Impl: substring},
		{Name: "trim", Min: 1, Max: 1, Doc: "remove leading and trailing white space", Example: "trim(' hi ') = 'hi'", Impl: str1(func(s string) any { return strings.TrimSpace(s) })},
		{Name: "upper", Min: 1, Max: 1, Doc: "upper case", Example: "upper('Hello') = 'HELLO'", Impl: str1(func(s string) any { return strings.ToUpper(s) })},
	}
}
