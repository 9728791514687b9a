package document

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/iotpipe/iotpipe/schemas/payload"
)

// FuzzUpdate applies two arbitrary update payloads in turn and checks
// that nothing panics, every message is valid JSON, the stored document
// round-trips byte for byte, an accepted update adds exactly one to the
// version and a rejected one changes nothing.
func FuzzUpdate(f *testing.F) {
	for _, seed := range [][2]string{
		{`{"state":{"desired":{"color":"red"}}}`, `{"state":{"reported":{"color":"red"}},"clientToken":"x"}`},
		{`{"state":{"desired":{"a":{"b":[1,2,{"c":null}]}}}}`, `{"state":{"desired":{"a":{"b":null}}},"version":1}`},
		{`{"state":{"reported":{"l":{"c":{"r":1}}}}}`, `{"state":null}`},
		{`{"state":{"desired":{"x":1e400,"y":"\ud800"}}}`, `{"state":{"desired":{}}}`},
		{`{"state":{}}`, `not json`},
		{`{"state":{"desired":{"a":1}},"version":0}`, `{"state":{"reported":{"a":1.0,"b":true,"c":"\u0000"}}}`},
	} {
		f.Add(seed[0], seed[1])
	}
	lim := Limits{MaxSize: 2048}
	f.Fuzz(func(t *testing.T, first, second string) {
		s := Shadow{Thing: "fuzz", Name: "n"}
		for _, p := range []string{first, second} {
			if rej := CheckPayload([]byte(p), lim); rej != nil {
				checkJSON(t, AppendError(nil, rej, 1, "", false))
				continue
			}
			v, err := payload.Decode([]byte(p))
			u, rej := ParseUpdate(v, err, len(p), lim)
			if rej != nil {
				checkJSON(t, AppendError(nil, rej, 1, u.ClientToken, u.HasClientToken))
				continue
			}
			before := AppendStored(nil, &s)
			next, r, rej := Apply(&s, &u, 1, lim)
			if after := AppendStored(nil, &s); !bytes.Equal(before, after) {
				t.Fatalf("Apply modified its input:\n%s\n%s", before, after)
			}
			if rej != nil {
				if !bytes.Equal(AppendStored(nil, &next), before) {
					t.Fatalf("rejected update changed the shadow")
				}
				continue
			}
			if next.Version != s.Version+1 {
				t.Fatalf("version %d after %d", next.Version, s.Version)
			}
			for _, m := range [][]byte{r.Accepted, r.Documents, r.Stored} {
				checkJSON(t, m)
			}
			if r.Delta != nil {
				checkJSON(t, r.Delta)
			}
			d, err := DecodeStored(r.Stored)
			if err != nil {
				t.Fatalf("decode stored %s: %v", r.Stored, err)
			}
			if again := AppendStored(nil, &d); !bytes.Equal(again, r.Stored) {
				t.Fatalf("stored document does not round-trip:\n%s\n%s", r.Stored, again)
			}
			g, rej := AppendGet(nil, &next, 2, Token{})
			if rej != nil {
				t.Fatalf("get of an updated shadow: %v", rej)
			}
			checkJSON(t, g)
			s = next
		}
	})
}

func checkJSON(t *testing.T, b []byte) {
	t.Helper()
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
}
