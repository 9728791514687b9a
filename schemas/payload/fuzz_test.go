package payload

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// edgeInputs are payloads at the edges of JSON and of the number rules,
// seeds of FuzzDecodeMatchesReference (so plain go test checks each).
var edgeInputs = []string{
	`{"a":[1,2.5,"x"]}`, `null`, `true`, `false`, `{"a":{"b":{}}}`, `[]`, `{}`, `[[[]]]`,
	`-0`, `-0.0`, `0`, `-`, `01`, `-01`, `1.`, `.5`, `1e`, `1e+`, `+1`, `1E+2`, `1e-400`, `1e400`, `-1e999`,
	`9223372036854775807`, `9223372036854775808`, `-9223372036854775808`, `-9223372036854775809`,
	`123456789012345678901234567890`, `0.1e1`, `2.5E-3`, `1.7976931348623157e308`, `1.8e308`, `4.9e-324`,
	`[1,]`, `{"a":1,}`, `{"a":1,"a":2}`, `{"a":{"b":1},"a":[2]}`, `[1 2]`, `{"a" 1}`, `{1:1}`, `{"a":1`, `[`, `{`,
	`tru`, `nul`, `fals`, `truex`, `nullnull`, "\ufeff1", "1\x00", " \t\r\n1\n ", "\v1\f", "\u00a01\u0085",
	`"\/\"\\\b\f\n\r\t"`, `"\u0041\u00e9\u20ac"`, `"\ud83d\ude00"`, `"\ud800"`, `"\ud800x"`, `"\ud800\u0041"`,
	`"\ud800\ud800\udc00"`, `"\udc00"`, `"\u0000"`, `"\U0041"`, `"\x"`, `"\u12"`, `"\u12G4"`, "\"a\tb\"",
	"\"a\xffb\"", "\"\xed\xa0\x80\"", "\"\xc0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\x7f\"", "\"é€😀\"",
	"{\"\xff\":1}", `{"\u00e9":1,"é":2}`, `{"":1}`, "[1,\v2]", "[1,\u00a02]", `"abc`, `"\`,
	`"\ud800\u12G4"`, `"\ud800\"`, `"\ud800\u"`, `"\ud800\\"`, `"\ud83d\ude00\ude00"`,
	`1e99999999999999999999`, `-1e-99999999999999999999`, `[1e999,"\u0041"]`, `{"a":1e999}`, `1e1000A`, `[1e999,]`, `{"a":-1e999,"b":1e999 `,
	`{"a":1e999,"a":1}`, `{"a":[1e999],"a":{"b":1e999},"a":2}`, `{"a":{"b":1e999,"b":0},"a":[1,-1e999]}`,
	`999999999999999999`, `-999999999999999999`, `1000000000000000000`, `-1000000000000000000`,
	"1" + strings.Repeat("0", 400), "-" + strings.Repeat("9", 400) + ".5",
	strings.Repeat("[", 2000) + strings.Repeat("]", 2000),
	strings.Repeat(`{"a":`, 1000) + "1" + strings.Repeat("}", 1000),
	strings.Repeat(`{"a":[`, 100) + strings.Repeat("]}", 99) + "]",
}

// FuzzDecodeMatchesReference checks that Decode and DecodeLenient give
// the value referenceDecode (the decoder before) gives, or fail where it
// fails.
func FuzzDecodeMatchesReference(f *testing.F) {
	for _, s := range edgeInputs {
		f.Add([]byte(s))
	}
	for _, name := range benchDocs {
		data, err := os.ReadFile(filepath.Join("testdata", name+".json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkMatchesReference(t, data) })
}

func checkMatchesReference(t *testing.T, data []byte) {
	t.Helper()
	for _, lenient := range []bool{false, true} {
		in := string(data) // the decoders must not keep or change data
		want, wantErr := referenceDecode([]byte(in), lenient)
		got, err := decode(data, lenient)
		if string(data) != in {
			t.Fatalf("decode(%q) changed its input to %q", in, data)
		}
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("decode(%q, lenient %v) = %#v, %v; the reference gives %#v, %v", data, lenient, got, err, want, wantErr)
		}
		if err != nil {
			if !errors.Is(err, ErrNotJSON) {
				t.Fatalf("decode(%q): %v does not wrap ErrNotJSON", data, err)
			}
			// A number out of range is the error only of a payload that
			// is JSON otherwise (a reader may fall back on such a payload).
			if isRangeError(err) != isRangeError(wantErr) {
				t.Fatalf("decode(%q, lenient %v) err = %v; the reference gives %v", data, lenient, err, wantErr)
			}
			continue
		}
		if !sameValue(got, want) {
			t.Fatalf("decode(%q, lenient %v) = %#v; the reference gives %#v", data, lenient, got, want)
		}
		// The value shares no memory with data: the caller may reuse it.
		scratch := []byte(in)
		got, _ = decode(scratch, lenient)
		for i := range scratch {
			scratch[i] = '#'
		}
		if !sameValue(got, want) {
			t.Fatalf("decode(%q, lenient %v) changed with its input to %#v", in, lenient, got)
		}
	}
}

func isRangeError(err error) bool { return strings.Contains(err.Error(), "out of range") }

// sameValue is reflect.DeepEqual for decoded values, except that floats
// are equal only with equal bits (-0 is not 0).
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) || (x == nil) != (y == nil) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case float64:
		y, ok := b.(float64)
		return ok && math.Float64bits(x) == math.Float64bits(y)
	case string, int64, bool, nil:
		return a == b
	}
	return false
}
