package funcs

import (
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

func TestTopicLevel(t *testing.T) {
	tests := []struct {
		topic string
		n     int64
		want  string
		ok    bool
	}{
		{"a/b/c", 1, "a", true},
		{"a/b/c", 3, "c", true},
		{"a/b/c", 4, "", false},
		{"/topic/x", 1, "", true},
		{"/topic/x", 2, "topic", true},
		{"a//c", 2, "", true},
		{"a", 0, "", false},
	}
	for _, tt := range tests {
		got, ok := TopicLevel(tt.topic, tt.n)
		if got != tt.want || ok != tt.ok {
			t.Errorf("TopicLevel(%q, %d) = %q, %v; want %q, %v", tt.topic, tt.n, got, ok, tt.want, tt.ok)
		}
	}
}

func TestJodaLayout(t *testing.T) {
	ts := time.Date(2025, 3, 4, 17, 5, 9, 120e6, time.UTC)
	tests := []struct{ pattern, want string }{
		{"yyyy-MM-dd'T'HH:mm:ss.SSSZ", "2025-03-04T17:05:09.120+0000"},
		{"yy/M/d h:m:s a", "25/3/4 5:5:9 PM"},
		{"EEE, dd MMM yyyy", "Tue, 04 Mar 2025"},
		{"EEEE MMMM", "Tuesday March"},
		{"'at' HH 'o''clock'", "at 17 o'clock"},
	}
	for _, tt := range tests {
		layout, err := JodaLayout(tt.pattern)
		if err != nil {
			t.Errorf("JodaLayout(%q): %v", tt.pattern, err)
			continue
		}
		if got := ts.Format(layout); got != tt.want {
			t.Errorf("JodaLayout(%q) formats %q, want %q", tt.pattern, got, tt.want)
		}
	}
	if _, err := JodaLayout("yyyy 'open"); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestMD2(t *testing.T) {
	// RFC 1319 test suite.
	vectors := map[string]string{
		"":                           "8350e5a3e24c153df2275c9f80692773",
		"a":                          "32ec01ec4a6dac72c0ab96fb34c0b5d1",
		"abc":                        "da853b0d3f88d99b30283a69e6ded6bb",
		"message digest":             "ab4f496bfb2a530b219ff33031fe06b0",
		"abcdefghijklmnopqrstuvwxyz": "4e8ddff3650292ab5a4108c3aa47940b",
		"12345678901234567890123456789012345678901234567890123456789012345678901234567890": "d5976f79d83d3a0dc9806c3c66f3efd8",
	}
	f, _ := Lookup("MD2")
	for in, want := range vectors {
		if got := f.Impl(&env.Ctx{}, []any{in}); got != want {
			t.Errorf("md2(%q) = %v, want %s", in, got, want)
		}
	}
}

func TestCatalog(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range All() {
		if seen[f.Name] {
			t.Errorf("%s listed twice", f.Name)
		}
		seen[f.Name] = true
		if f.Doc == "" || f.Example == "" || f.Impl == nil {
			t.Errorf("%s lacks a doc, an example or an implementation", f.Name)
		}
	}
	// The catalog: every AWS IoT SQL function that does not call
	// an AWS service.
	for _, n := range []string{"abs", "acos", "asin", "atan", "atan2", "ceil", "cos", "cosh", "exp", "floor", "ln", "log", "mod", "nanvl", "power", "rand", "remainder", "round", "sign", "sin", "sinh", "sqrt", "tan", "tanh", "trunc",
		"bitand", "bitor", "bitxor", "bitnot", "chr", "concat", "decode", "encode", "endswith", "indexof", "length", "lower", "lpad", "ltrim", "numbytes", "regexp_matches", "regexp_replace", "regexp_substr", "replace", "rpad", "rtrim", "startswith", "substring", "trim", "upper",
		"md2", "md5", "sha1", "sha224", "sha256", "sha384", "sha512", "crc32", "isNull", "isUndefined", "topic", "clientid", "principal", "timestamp", "traceid", "newuuid", "parse_time", "time_to_epoch", "get", "get_thing_shadow"} {
		if _, ok := Lookup(n); !ok {
			t.Errorf("%s missing from the catalog", n)
		}
	}
	if f, ok := Lookup("ISNULL"); !ok || f.Name != "isNull" {
		t.Error("lookup is not case-insensitive")
	}
}

func TestCast(t *testing.T) {
	tests := []struct {
		v      any
		target string
		want   any
	}{
		{"42", "int", int64(42)},
		{-2.5, "int", int64(-3)},
		{true, "decimal", 1.0},
		{int64(3), "string", "3"},
		{"false", "bool", false},
		{0.0, "bool", false},
		{[]any{}, "int", value.Undefined},
		{"abc", "decimal", value.Undefined},
	}
	for _, tt := range tests {
		if got := Cast(tt.v, tt.target); got != tt.want {
			t.Errorf("Cast(%v, %s) = %#v, want %#v", tt.v, tt.target, got, tt.want)
		}
	}
}
