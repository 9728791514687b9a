package document

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/iotpipe/iotpipe/schemas/payload"
)

func decode(t testing.TB, s string) any {
	t.Helper()
	v, err := payload.Decode([]byte(s))
	if err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return v
}

// update applies the update documents in order to a new shadow at the
// times given and returns the shadow and the last result.
func update(t testing.TB, s Shadow, now int64, docs ...string) (Shadow, Result) {
	t.Helper()
	var r Result
	for _, d := range docs {
		u, rej := ParseUpdate(decode(t, d), nil, len(d), Limits{})
		if rej != nil {
			t.Fatalf("parse %s: %v", d, rej)
		}
		var err *Error
		s, r, err = Apply(&s, &u, now, Limits{})
		if err != nil {
			t.Fatalf("apply %s: %v", d, err)
		}
	}
	return s, r
}

func stateJSON(s *Shadow) string {
	b, _ := appendState(nil, s.desired, s.reported)
	return string(b)
}

func metaJSON(s *Shadow) string {
	return string(appendMetadata(nil, s.desired, s.reported))
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name    string
		updates []string
		state   string
		meta    string
	}{
		{"create", []string{`{"state":{"desired":{"a":1}}}`}, `{"desired":{"a":1}}`, `{"desired":{"a":{"timestamp":9}}}`},
		{"null deletes a key", []string{`{"state":{"desired":{"a":1,"b":2}}}`, `{"state":{"desired":{"a":null}}}`}, `{"desired":{"b":2}}`, `{"desired":{"b":{"timestamp":9}}}`},
		{"empty object deletes a key", []string{`{"state":{"desired":{"a":1,"b":2}}}`, `{"state":{"desired":{"a":{}}}}`}, `{"desired":{"b":2}}`, `{"desired":{"b":{"timestamp":9}}}`},
		{"deleting the last key removes the section", []string{`{"state":{"desired":{"a":1},"reported":{"a":1}}}`, `{"state":{"desired":{"a":null}}}`}, `{"reported":{"a":1}}`, `{"reported":{"a":{"timestamp":9}}}`},
		{"section null", []string{`{"state":{"desired":{"a":1},"reported":{"b":1}}}`, `{"state":{"desired":null}}`}, `{"reported":{"b":1}}`, `{"reported":{"b":{"timestamp":9}}}`},
		{"state null", []string{`{"state":{"desired":{"a":1},"reported":{"b":1}}}`, `{"state":null}`}, `{}`, `{}`},
		{"deep merge", []string{`{"state":{"reported":{"l":{"c":{"r":1,"g":2}}}}}`, `{"state":{"reported":{"l":{"c":{"g":3,"b":4}}}}}`}, `{"reported":{"l":{"c":{"b":4,"g":3,"r":1}}}}`, `{"reported":{"l":{"c":{"b":{"timestamp":9},"g":{"timestamp":9},"r":{"timestamp":9}}}}}`},
		{"arrays replace whole", []string{`{"state":{"desired":{"colors":["RED","GREEN","BLUE"]}}}`, `{"state":{"desired":{"colors":["RED"]}}}`}, `{"desired":{"colors":["RED"]}}`, `{"desired":{"colors":[{"timestamp":9}]}}`},
		{"object replaces scalar", []string{`{"state":{"reported":{"a":1}}}`, `{"state":{"reported":{"a":{"x":1,"y":null}}}}`}, `{"reported":{"a":{"x":1}}}`, `{"reported":{"a":{"x":{"timestamp":9}}}}`},
		{"scalar replaces object", []string{`{"state":{"reported":{"a":{"x":1}}}}`, `{"state":{"reported":{"a":"s"}}}`}, `{"reported":{"a":"s"}}`, `{"reported":{"a":{"timestamp":9}}}`},
		{"new object of nulls is not created", []string{`{"state":{"reported":{"a":{"b":{"c":null}}}}}`}, `{}`, `{}`},
		{"emptied nested object stays", []string{`{"state":{"reported":{"a":{"b":1},"c":1}}}`, `{"state":{"reported":{"a":{"b":null}}}}`}, `{"reported":{"a":{},"c":1}}`, `{"reported":{"a":{},"c":{"timestamp":9}}}`},
		{"objects in arrays", []string{`{"state":{"desired":{"l":[{"a":1},2]}}}`}, `{"desired":{"l":[{"a":1},2]}}`, `{"desired":{"l":[{"a":{"timestamp":9}},{"timestamp":9}]}}`},
		{"empty state changes nothing", []string{`{"state":{"desired":{"a":1}}}`, `{"state":{}}`}, `{"desired":{"a":1}}`, `{"desired":{"a":{"timestamp":9}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := update(t, Shadow{Thing: "t"}, 9, tt.updates...)
			if got := stateJSON(&s); got != tt.state {
				t.Errorf("state = %s, want %s", got, tt.state)
			}
			if got := metaJSON(&s); got != tt.meta {
				t.Errorf("metadata = %s, want %s", got, tt.meta)
			}
			if s.Version != int64(len(tt.updates)) {
				t.Errorf("version = %d, want %d", s.Version, len(tt.updates))
			}
		})
	}
}

func TestMetadataKeepsOldTimestamps(t *testing.T) {
	s, _ := update(t, Shadow{Thing: "t"}, 100, `{"state":{"reported":{"a":1,"b":{"c":1}}}}`)
	s, _ = update(t, s, 200, `{"state":{"reported":{"b":{"d":2}}}}`)
	want := `{"reported":{"a":{"timestamp":100},"b":{"c":{"timestamp":100},"d":{"timestamp":200}}}}`
	if got := metaJSON(&s); got != want {
		t.Errorf("metadata = %s, want %s", got, want)
	}
	if s.Timestamp != 200 {
		t.Errorf("timestamp = %d, want 200", s.Timestamp)
	}
}

func TestDelta(t *testing.T) {
	tests := []struct {
		name    string
		updates []string
		delta   string // "" for none
	}{
		{"desired only", []string{`{"state":{"desired":{"a":1}}}`}, `{"a":1}`},
		{"reported only fields are not in it", []string{`{"state":{"desired":{"a":1},"reported":{"a":1,"b":2}}}`}, ""},
		{"differing value", []string{`{"state":{"desired":{"a":1,"b":"x"},"reported":{"a":2,"b":"x"}}}`}, `{"a":1}`},
		{"nested path", []string{`{"state":{"desired":{"l":{"c":{"r":255,"g":255,"b":255}}},"reported":{"l":{"c":{"r":255,"g":0,"b":255}}}}}`}, `{"l":{"c":{"g":255}}}`},
		{"arrays whole", []string{`{"state":{"desired":{"c":[1,2,3]},"reported":{"c":[1,2,4]}}}`}, `{"c":[1,2,3]}`},
		{"equal arrays", []string{`{"state":{"desired":{"c":[1,{"x":2}]},"reported":{"c":[1,{"x":2}]}}}`}, ""},
		{"numbers by value", []string{`{"state":{"desired":{"a":1},"reported":{"a":1.0}}}`}, ""},
		{"type differs", []string{`{"state":{"desired":{"a":{"x":1}},"reported":{"a":"x"}}}`}, `{"a":{"x":1}}`},
		{"deleted from reported", []string{`{"state":{"desired":{"a":1},"reported":{"a":1}}}`, `{"state":{"reported":{"a":null}}}`}, `{"a":1}`},
		{"empty desired object skipped", []string{`{"state":{"desired":{"a":{"b":1}}}}`, `{"state":{"desired":{"a":{"b":null}}}}`}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, r := update(t, Shadow{Thing: "t"}, 5, tt.updates...)
			d := delta(s.desired, s.reported)
			var got string
			if d != nil {
				got = string(appendObjectState(nil, d))
			}
			if got != tt.delta {
				t.Errorf("delta = %s, want %s", got, tt.delta)
			}
			if (r.Delta != nil) != (tt.delta != "") {
				t.Errorf("delta message = %s, want one: %t", r.Delta, tt.delta != "")
			}
		})
	}
}

func TestParseUpdateRejects(t *testing.T) {
	tests := []struct {
		payload string
		code    int
		message string
		token   string
	}{
		{`not json`, 400, "Payload contains invalid json", ""},
		{`[1]`, 400, "Payload contains invalid json", ""},
		{`{"clientToken":"c"}`, 400, "Missing required node: state", "c"},
		{`{"state":"x","clientToken":"c"}`, 400, "State node must be an object", "c"},
		{`{"state":{"desired":1}}`, 400, "Desired node must be an object", ""},
		{`{"state":{"reported":[]}}`, 400, "Reported node must be an object", ""},
		{`{"state":{"delta":{},"zz":1}}`, 400, "State contains an invalid node: 'delta'", ""},
		{`{"state":{"":1,"2B":2}}`, 400, "State contains an invalid node: ''", ""},
		{`{"state":{"":1}}`, 400, "State contains an invalid node: ''", ""},
		{`{"state":{},"version":1.5}`, 400, "Invalid version", ""},
		{`{"state":{},"version":"1"}`, 400, "Invalid version", ""},
		{`{"state":{},"clientToken":1}`, 400, "Invalid clientToken", ""},
		{`{"state":{},"clientToken":"` + strings.Repeat("x", 65) + `"}`, 400, "Invalid clientToken", ""},
		{`{"state":{"desired":{"a":[null]}}}`, 400, "State contains an invalid node: arrays can't contain null", ""},
		{`{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}`, 400, "JSON contains too many levels of nesting; maximum is 6", ""},
		{`{"state":{"desired":{"a":[[[[[[1]]]]]]}}}`, 400, "JSON contains too many levels of nesting; maximum is 6", ""},
		{`{"state":{"desired":{"a":"` + strings.Repeat("x", 8200) + `"}}}`, 413, "The payload exceeds the maximum size allowed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.message, func(t *testing.T) {
			v, err := payload.Decode([]byte(tt.payload))
			u, rej := ParseUpdate(v, err, len(tt.payload), Limits{})
			if rej == nil {
				t.Fatalf("accepted %s", tt.payload)
			}
			if rej.Code != tt.code || rej.Message != tt.message {
				t.Errorf("got %d %q, want %d %q", rej.Code, rej.Message, tt.code, tt.message)
			}
			if u.ClientToken != tt.token {
				t.Errorf("clientToken = %q, want %q", u.ClientToken, tt.token)
			}
		})
	}
	// Accepted at the limits.
	for _, ok := range []string{
		`{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}}}`,
		`{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":{}}}}}}}}}`,
		`{"state":{},"clientToken":"` + strings.Repeat("x", 64) + `","version":3}`,
		`{"state":{},"version":3.0}`,
	} {
		if _, rej := ParseUpdate(decode(t, ok), nil, len(ok), Limits{}); rej != nil {
			t.Errorf("%s rejected: %v", ok, rej)
		}
	}
}

func TestStateSizeLimit(t *testing.T) {
	lim := Limits{MaxSize: 52}
	s := Shadow{Thing: "t"}
	for i, d := range []string{`{"state":{"reported":{"a":"` + strings.Repeat("a", 20) + `"}}}`, `{"state":{"desired":{"b":"` + strings.Repeat("b", 20) + `"}}}`} {
		u, rej := ParseUpdate(decode(t, d), nil, len(d), lim)
		if rej != nil {
			t.Fatal(rej)
		}
		next, _, rej := Apply(&s, &u, 1, lim)
		if i == 0 && rej != nil {
			t.Fatalf("first update rejected: %v", rej)
		}
		if i == 1 {
			if rej == nil || rej.Code != 413 {
				t.Fatalf("second update: got %v, want 413", rej)
			}
			if next.Version != 1 || stateJSON(&next) != stateJSON(&s) {
				t.Errorf("rejected update changed the shadow: %s v%d", stateJSON(&next), next.Version)
			}
		}
		if rej == nil {
			s = next
		}
	}
}

func TestVersionConflict(t *testing.T) {
	s, _ := update(t, Shadow{Thing: "t"}, 1, `{"state":{"desired":{"a":1}}}`, `{"state":{"desired":{"a":2}}}`)
	for _, tc := range []struct {
		version int64
		ok      bool
	}{{1, false}, {3, false}, {2, true}} {
		u := Update{state: object{}, Version: tc.version, HasVersion: true}
		_, _, rej := Apply(&s, &u, 2, Limits{})
		if tc.ok != (rej == nil) {
			t.Errorf("version %d: got %v", tc.version, rej)
		}
		if rej != nil && (rej.Code != 409 || rej.Message != "Version conflict") {
			t.Errorf("version %d: got %v, want 409 Version conflict", tc.version, rej)
		}
	}
}

func TestApplyLeavesInputUnchanged(t *testing.T) {
	s, _ := update(t, Shadow{Thing: "t"}, 1, `{"state":{"desired":{"a":{"b":1,"c":[1,2]}},"reported":{"x":1}}}`)
	before := string(AppendStored(nil, &s))
	update(t, s, 2, `{"state":{"desired":{"a":{"b":null,"c":[3],"d":{"e":1}}},"reported":null}}`)
	if after := string(AppendStored(nil, &s)); after != before {
		t.Errorf("Apply modified its input:\n%s\n%s", before, after)
	}
}

func TestStoredRoundTrip(t *testing.T) {
	s, _ := update(t, Shadow{Thing: `th"ing`, Name: "n"}, 7,
		`{"state":{"desired":{"a":{"timestamp":5},"b":[{"x":1},"y"],"c":"\u2028\n"},"reported":{"timestamp":1,"e":[]}}}`)
	s, _ = update(t, s, 8, `{"state":{"reported":{"f":1.5e300,"g":-0.000001}}}`)
	b := AppendStored(nil, &s)
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	d, err := DecodeStored(b)
	if err != nil {
		t.Fatal(err)
	}
	if b2 := AppendStored(nil, &d); !bytes.Equal(b, b2) {
		t.Errorf("round trip differs:\n%s\n%s", b, b2)
	}
	if d.Thing != s.Thing || d.Name != s.Name || d.Version != 2 || d.Timestamp != 8 || d.Deleted {
		t.Errorf("decoded %+v", d)
	}
	if !reflect.DeepEqual(d.Desired(), s.Desired()) || !reflect.DeepEqual(d.Reported(), s.Reported()) {
		t.Errorf("decoded state differs")
	}
	// A decoded shadow and the original give the same messages, with and
	// without the kept encoding.
	u, _ := ParseUpdate(decode(t, `{"state":{"desired":{"a":1}}}`), nil, 10, Limits{})
	_, r1, _ := Apply(&s, &u, 9, Limits{})
	_, r2, _ := Apply(&d, &u, 9, Limits{})
	d.encState, d.encMeta = nil, nil
	_, r3, _ := Apply(&d, &u, 9, Limits{})
	if !reflect.DeepEqual(r1, r2) || !reflect.DeepEqual(r1, r3) {
		t.Errorf("results differ:\n%s\n%s\n%s", r1.Documents, r2.Documents, r3.Documents)
	}
}

func TestDelete(t *testing.T) {
	s, _ := update(t, Shadow{Thing: "t"}, 1, `{"state":{"desired":{"a":1}}}`, `{"state":{"reported":{"a":1}}}`)
	if _, _, _, rej := Delete(&s, Token{Version: 1, HasVersion: true}, 2); rej == nil || rej.Code != 409 {
		t.Errorf("stale delete: %v", rej)
	}
	d, acc, stored, rej := Delete(&s, Token{ClientToken: "c", HasClientToken: true}, 3)
	if rej != nil {
		t.Fatal(rej)
	}
	if want := `{"version":2,"timestamp":3,"clientToken":"c"}`; string(acc) != want {
		t.Errorf("accepted = %s, want %s", acc, want)
	}
	if want := `{"thing":"t","shadow":"","state":{},"metadata":{},"version":2,"timestamp":3,"deleted":true}`; string(stored) != want {
		t.Errorf("stored = %s, want %s", stored, want)
	}
	if d.Exists() {
		t.Error("deleted shadow exists")
	}
	if _, _, _, rej := Delete(&d, Token{}, 4); rej == nil || rej.Code != 404 {
		t.Errorf("second delete: %v", rej)
	}
	if _, rej := AppendGet(nil, &d, 4, Token{}); rej == nil || rej.Message != "No shadow exists with name: 't'" {
		t.Errorf("get after delete: %v", rej)
	}
	n, r := update(t, d, 5, `{"state":{"reported":{"b":1}}}`)
	if n.Version != 3 {
		t.Errorf("version after delete and update = %d, want 3", n.Version)
	}
	if !bytes.HasPrefix(r.Documents, []byte(`{"previous":null,`)) {
		t.Errorf("documents after delete: %s", r.Documents)
	}
	if got := stateJSON(&n); got != `{"reported":{"b":1}}` {
		t.Errorf("state after delete and update = %s", got)
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\back`, "\x00\x1f\t\n\r", "héllo ☃", "\xff\xfe", "\u2028\u2029", "<&>"} {
		b := appendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q encoded as invalid JSON %s: %v", s, b, err)
		}
		want := strings.Map(func(r rune) rune { return r }, s) // each invalid byte becomes U+FFFD
		if got != want {
			t.Errorf("%q: round trip gave %q", s, got)
		}
	}
}

func TestAppendFloat(t *testing.T) {
	for _, f := range []float64{0, 1.5, -2.25, 1e21, 1e-7, 123456789.125, 1.5e300} {
		want, _ := json.Marshal(f)
		if got := appendFloat(nil, f); string(got) != string(want) {
			t.Errorf("%v: got %s, want %s", f, got, want)
		}
	}
}
