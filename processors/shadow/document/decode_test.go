package document

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/iotpipe/iotpipe/schemas/payload"
)

// TestDecodeFast checks that the specialised decoder takes the common
// requests, leaves to payload.Decode what it does not handle, and gives
// payload.Decode's value whenever it answers.
func TestDecodeFast(t *testing.T) {
	tests := []struct {
		in   string
		fast bool
	}{
		{`{"state":{"reported":{"temp":22.51,"humidity":40,"led":{"color":"red"},"online":true,"x":null}},"clientToken":"dev-1"}`, true},
		{` {"state":{"desired":{"l":[1,-2,3.5e2,"s",false,[],{}]}},"version":12} `, true},
		{"\t{\"a\" : [ 1 , 2 ]\n}\r\n", true},
		{`{"a":"é€😀"}`, true},
		{`{"a":-0,"b":0,"c":-0.0,"d":123456789012345678,"e":1E+2}`, true},
		{`[]`, true},
		{`"s"`, true},
		{`null`, true},
		{`{"a":"\n"}`, false},                 // escape
		{`{"a":"\u00e9"}`, false},             // escape
		{`{"a":1,"a":2}`, false},              // duplicate key
		{`{"a":1234567890123456789}`, false},  // 19 digits
		{`{"a":99999999999999999999}`, false}, // beyond int64
		{`{"a":1e400}`, false},                // float out of range
		{"\v{}", false},                       // not JSON whitespace
		{`{"a":01}`, false},
		{`{"a":1.}`, false},
		{`{"a":.5}`, false},
		{`{"a":1e}`, false},
		{`{"a":tru}`, false},
		{`{"a":1,}`, false},
		{`[1,]`, false},
		{`{"a":1} x`, false},
		{`{"a":1`, false},
		{`{a:1}`, false},
		{"{\"a\":\"\x01\"}", false},
		{"{\"a\":\"\xff\"}", false},
		{``, false},
		{strings.Repeat("[", 40) + strings.Repeat("]", 40), false},
	}
	for _, tt := range tests {
		v, ok := decodeFast([]byte(tt.in))
		if ok != tt.fast {
			t.Errorf("decodeFast(%q) took it: %t, want %t", tt.in, ok, tt.fast)
		}
		want, wantErr := payload.Decode([]byte(tt.in))
		got, gotErr := decodePayload([]byte(tt.in))
		if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && !errors.Is(gotErr, payload.ErrNotJSON)) {
			t.Errorf("decodePayload(%q) error %v, payload.Decode %v", tt.in, gotErr, wantErr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("decodePayload(%q) = %#v, payload.Decode %#v", tt.in, got, want)
		}
		if ok && !reflect.DeepEqual(v, want) {
			t.Errorf("decodeFast(%q) = %#v, payload.Decode %#v", tt.in, v, want)
		}
	}
}

// FuzzDecodeFast checks that whatever the specialised decoder accepts,
// payload.Decode accepts too and decodes to the same value (so the
// processor's answers do not depend on which decoder ran).
func FuzzDecodeFast(f *testing.F) {
	for _, s := range []string{
		`{"state":{"reported":{"temp":22.51,"humidity":40,"led":{"color":"red"}}},"clientToken":"c"}`,
		`{"a":[1,-0,0.5e-3,"x",true,null,{}]}`, `{"a":1,"a":2}`, `"\u00e9"`, `-12345678901234567890`, `1e400`, ` [ ] `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, ok := decodeFast(data)
		if !ok {
			return
		}
		want, err := payload.Decode(data)
		if err != nil {
			t.Fatalf("decodeFast took %q, payload.Decode rejects it: %v", data, err)
		}
		if !reflect.DeepEqual(v, want) {
			t.Fatalf("decodeFast(%q) = %#v, payload.Decode %#v", data, v, want)
		}
		if a, b := appendValue(nil, v), appendValue(nil, want); string(a) != string(b) {
			t.Fatalf("decodeFast(%q) encodes as %s, payload.Decode's value as %s", data, a, b)
		}
	})
}

// FuzzParsePayload checks that ParseUpdatePayload and
// ParseRequestPayload, which decode the payload themselves, answer
// exactly as ParseUpdate and ParseRequest of payload.Decode (the
// processor's former path): the same Update or Token and the same error.
func FuzzParsePayload(f *testing.F) {
	for _, s := range []string{
		`{"state":{"reported":{"temp":22.5,"led":{"c":"red"}}},"clientToken":"c","version":3}`,
		`{"state":{"desired":{"a":[1,null]}}}`, `{"state":null}`, `{"state":{"x":1,"delta":2}}`, `{"clientToken":"\u00e9"}`,
		`{"state":{},"version":1.0}`, `{"state":{},"clientToken":"a","clientToken":"b"}`, ` `, `nope`, `[]`,
		`{"state":{},"x":1,"x":2}`, `{"state":{},"state":{"desired":{}}}`, `{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"state":{}}`,
		`{}`, ` {"version":null,"state":{"reported":{"a":1}}} `, `{"state":{"desired":{"a":1}}} x`,
	} {
		f.Add([]byte(s))
	}
	lim := Limits{MaxSize: 1024}
	f.Fuzz(func(t *testing.T, raw []byte) {
		v, err := payload.Decode(raw)
		want, wantErr := ParseUpdate(v, err, len(raw), lim)
		got, gotErr := ParseUpdatePayload(raw, lim)
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotErr, wantErr) {
			t.Fatalf("ParseUpdatePayload(%q) = %+v, %v; ParseUpdate of payload.Decode %+v, %v", raw, got, gotErr, want, wantErr)
		}
		empty := len(strings.TrimLeft(string(raw), " \t\r\n")) == 0
		var rv any
		var rerr error
		if !empty {
			rv, rerr = payload.Decode(raw)
		}
		wantTok, wantTokErr := ParseRequest(rv, rerr, empty, lim)
		gotTok, gotTokErr := ParseRequestPayload(raw, empty, lim)
		if gotTok != wantTok || !reflect.DeepEqual(gotTokErr, wantTokErr) {
			t.Fatalf("ParseRequestPayload(%q) = %+v, %v; ParseRequest of payload.Decode %+v, %v", raw, gotTok, gotTokErr, wantTok, wantTokErr)
		}
	})
}

// FuzzShape checks that shape, the one walk ParseUpdate makes, reports
// what tooDeep and nullInArray do.
func FuzzShape(f *testing.F) {
	for _, s := range []string{`{"a":{"b":{"c":[1,[2,null]]}}}`, `[[[[]]]]`, `{"a":[{},{"b":null}]}`, `[null]`, `{"a":{"b":{"c":{}}}}`} {
		f.Add([]byte(s), uint8(2))
	}
	f.Fuzz(func(t *testing.T, raw []byte, max uint8) {
		v, err := payload.Decode(raw)
		if err != nil {
			return
		}
		m := int(max%8) + 1
		deep, null := shape(v, 1, m)
		if want := tooDeep(v, 1, m); deep != want {
			t.Fatalf("shape(%s, max %d) deep %t, tooDeep %t", raw, m, deep, want)
		}
		if want := nullInArray(v); !deep && null != want {
			t.Fatalf("shape(%s) null %t, nullInArray %t", raw, null, want)
		}
		// The same value as a patch (what ParseUpdate walks).
		if pdeep, pnull := shape(toPatch(v), 1, m); pdeep != deep || pnull != null {
			t.Fatalf("shape(toPatch(%s)) = %t, %t; shape of the map %t, %t", raw, pdeep, pnull, deep, null)
		}
	})
}

// TestDecodeFastRequest checks which request objects the specialised
// decoder takes (the others go to payload.Decode; FuzzParsePayload
// checks that both paths answer alike).
func TestDecodeFastRequest(t *testing.T) {
	tests := []struct {
		in   string
		fast bool
	}{
		{`{"state":{"reported":{"temp":22.51,"led":{"color":"red"}}},"clientToken":"dev-1","version":3}`, true},
		{` {"state":null,"extra":[1,{"a":2}]} `, true},
		{`{}`, true},
		{`{"state":{},"state":{}}`, false},
		{`{"x":1,"x":2,"state":{}}`, false},
		{`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"state":{}}`, false},
		{`[{"state":{}}]`, false},
		{`{"state":{"desired":{"a":"\u00e9"}}}`, false},
		{`{"state":{}} {}`, false},
	}
	for _, tt := range tests {
		f, ok := decodeFastRequest([]byte(tt.in))
		if ok != tt.fast {
			t.Errorf("decodeFastRequest(%q) took it: %t, want %t", tt.in, ok, tt.fast)
			continue
		}
		if !ok {
			continue
		}
		v, err := payload.Decode([]byte(tt.in))
		if err != nil {
			t.Fatalf("payload.Decode(%q): %v", tt.in, err)
		}
		want := fieldsOf(v.(map[string]any))
		want.state = toPatch(want.state) // the fast decoder reads the state as a patch
		if !reflect.DeepEqual(f, want) {
			t.Errorf("decodeFastRequest(%q) = %+v, want %+v", tt.in, f, want)
		}
	}
}
