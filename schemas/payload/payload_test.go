package payload

import (
	"errors"
	"reflect"
	"testing"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		in   string
		want any
		err  bool
	}{
		{in: `{"a":1,"b":1.5,"c":"x","d":[true,null]}`, want: map[string]any{"a": int64(1), "b": 1.5, "c": "x", "d": []any{true, nil}}},
		{in: ` 42 `, want: int64(42)},
		{in: `1e3`, want: 1000.0},
		{in: `18446744073709551616`, want: 18446744073709551616.0},
		{in: `"s"`, want: "s"},
		{in: `{"a":`, err: true},
		{in: ``, err: true},
		{in: `1 2`, err: true},
		{in: "\x00\x01binary", err: true},
		{in: `1e999`, err: true},            // no float64 holds it
		{in: `{"a":[1,-2e400]}`, err: true}, // nested too
		{in: `4.9e-324`, want: 4.9e-324},    // the smallest denormal is fine
		{in: `1e-999`, want: 0.0},           // underflow rounds to zero, as encoding/json does
	}
	for _, tt := range tests {
		got, err := Decode([]byte(tt.in))
		if tt.err {
			if !errors.Is(err, ErrNotJSON) {
				t.Errorf("Decode(%q) err = %v, want ErrNotJSON", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Decode(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Decode(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
	}
}

func TestEncodeSortsKeys(t *testing.T) {
	b, err := Encode(map[string]any{"b": int64(1), "a": map[string]any{"z": 1.5, "y": nil}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"a":{"y":null,"z":1.5},"b":1}`; got != want {
		t.Fatalf("Encode = %s, want %s", got, want)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"a":[1,2.5,"x"]}`, `null`, `{"a":{"b":{}}}`, `-0`, `1e400`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := Decode(data)
		if err != nil {
			return
		}
		b, err := Encode(v)
		if err != nil {
			t.Fatalf("Encode after Decode(%q): %v", data, err)
		}
		if _, err := Decode(b); err != nil {
			t.Fatalf("re-Decode(%q): %v", b, err)
		}
	})
}

func TestDecodeLenient(t *testing.T) {
	tests := []struct {
		in      string
		want    any
		strictE bool // Decode refuses it
	}{
		{`{"a":1e999,"b":2}`, map[string]any{"a": "1e999", "b": int64(2)}, true},
		{`[1e999]`, []any{"1e999"}, true},
		{`{"a":1.5}`, map[string]any{"a": 1.5}, false},
	}
	for _, tt := range tests {
		got, err := DecodeLenient([]byte(tt.in))
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("DecodeLenient(%s) = %#v, %v; want %#v", tt.in, got, err, tt.want)
		}
		if _, err := Decode([]byte(tt.in)); (err != nil) != tt.strictE {
			t.Errorf("Decode(%s) err = %v, want an error: %v", tt.in, err, tt.strictE)
		}
	}
	if _, err := DecodeLenient([]byte(`{"a":`)); err == nil {
		t.Error("DecodeLenient accepted broken JSON")
	}
}

// TestDecodeErrorSays checks that an error names what is wrong and where
// (a byte offset in the payload as given).
func TestDecodeErrorSays(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, "payload is not JSON: empty"},
		{"  \n", "payload is not JSON: empty"},
		{`{"a":tru}`, "payload is not JSON: invalid literal, want true at offset 5"},
		{` [1,]`, `payload is not JSON: invalid character ']' looking for the beginning of a value at offset 4`},
		{`{"a":1`, "payload is not JSON: unexpected end after an object member at offset 6"},
		{`{"a" 1}`, `payload is not JSON: invalid character '1' after an object key at offset 5`},
		{`"a\qb"`, `payload is not JSON: invalid escape character 'q' in a string at offset 3`},
		{"\"a\tb\"", `payload is not JSON: invalid control character '\t' in a string at offset 2`},
		{`[1.]`, `payload is not JSON: invalid character ']' after a decimal point, looking for a digit at offset 3`},
		{`{"t":[1,-2e400]}`, "payload is not JSON: number -2e400 is out of range at offset 8"},
		{`1 2`, "payload is not JSON: trailing data after the first value at offset 2"},
	}
	for _, tt := range tests {
		_, err := Decode([]byte(tt.in))
		if err == nil || err.Error() != tt.want || !errors.Is(err, ErrNotJSON) {
			t.Errorf("Decode(%q) err = %v, want %s", tt.in, err, tt.want)
		}
	}
}
