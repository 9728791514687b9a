package registry

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/ingest/pki"
)

// sampleEntities returns one valid entity of each kind.
func sampleEntities(t testing.TB) []Entity {
	ca := testCA(t)
	dev := issue(t, ca, "dev")
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := ca.Certificate()
	es := []Entity{
		&Thing{Name: "dev", ID: "0b7c", TypeName: "Lamp", Attributes: map[string]string{"room": "a"}},
		newCertificate(dev.Certificate, StatusActive, ""),
		&CACertificate{
			ID: pki.ID(c.Raw), Status: CAActive, PEM: string(ca.CertificatePEM()), AutoRegistration: AutoRegistrationEnable,
			Policies: []string{"p"}, SubjectHash: subjectHash(c.RawSubject), KeyID: hex.EncodeToString(c.SubjectKeyId),
		},
		&Policy{Name: "p", Document: json.RawMessage(allowAll)},
		&Token{ID: "0123456789abcdef", Principal: "ops", SecretHash: secretHash("s")},
		&Attachment{Principal: dev.ID, Policy: "p"},
		&Attachment{Principal: "ops", Thing: "dev"},
	}
	for _, e := range es {
		stamp(e, nil, now)
	}
	return es
}

// Every entity survives encode and Decode; Decode refuses records that
// do not hold what their key says.
func TestDecode(t *testing.T) {
	for _, e := range sampleEntities(t) {
		v, err := encode(e)
		noErr(t, err)
		got, err := Decode([]byte(e.Key()), v)
		if err != nil {
			t.Fatalf("%s: %v", e.Key(), err)
		}
		a, _ := json.Marshal(e)
		b, _ := json.Marshal(got)
		if string(a) != string(b) {
			t.Errorf("%s: decoded\n%s\nwant\n%s", e.Key(), b, a)
		}
	}
	es := sampleEntities(t)
	cert := es[1].(*Certificate)
	wrongPEM := *cert
	wrongPEM.PEM = string(issue(t, testCA(t), "other").CertPEM)
	for _, tc := range []struct {
		name  string
		key   string
		value string
		want  string
	}{
		{"unknown key", "widget/x", `{"format":1,"kind":"thing"}`, "names no registry entity"},
		{"not JSON", "thing/x", `{`, "record thing/x"},
		{"newer format", "thing/x", `{"format":2,"kind":"thing","thingName":"x","version":1}`, "newer iotpipe"},
		{"kind of another key", "thing/x", `{"format":1,"kind":"policy","thingName":"x","version":1}`, `kind "policy"`},
		{"other name", "thing/x", `{"format":1,"kind":"thing","thingName":"y","version":1}`, "holds thing/y"},
		{"no version", "thing/x", `{"format":1,"kind":"thing","thingName":"x"}`, "version 0"},
		{"bad attribute", "thing/x", `{"format":1,"kind":"thing","thingName":"x","version":1,"attributes":{"k":"a b"}}`, "attribute"},
		{"bad status", cert.Key(), strings.Replace(mustEncode(t, cert), `"ACTIVE"`, `"ON"`, 1), "status"},
		{"PEM of another certificate", cert.Key(), mustEncode(t, &wrongPEM), "not that certificate"},
		{"attachment of both", "attach/ops/policy/p", `{"format":1,"kind":"policy-attachment","principal":"ops","policyName":"p","thingName":"t","version":1}`, ""},
		{"policy not an object", "policy/p", `{"format":1,"kind":"policy","policyName":"p","policyDocument":[1],"version":1}`, "JSON object"},
		{"token without hash", "token/0123456789abcdef", `{"format":1,"kind":"token","tokenId":"0123456789abcdef","principal":"ops","version":1}`, "secret hash"},
	} {
		_, err := Decode([]byte(tc.key), []byte(tc.value))
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want ErrInvalid with %q", tc.name, err, tc.want)
		}
	}
}

func mustEncode(t testing.TB, e Entity) string {
	v, err := encode(e)
	noErr(t, err)
	return string(v)
}

func FuzzDecode(f *testing.F) {
	for _, e := range sampleEntities(f) {
		v, err := encode(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(e.Key(), v)
	}
	f.Add("thing/x", []byte(`{"format":1,"kind":"thing","thingName":"x","version":1,"attributes":{"":""}}`))
	f.Add("attach/x/thing/y", []byte(`{}`))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		e, err := Decode([]byte(key), value)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		if e.Key() != key {
			t.Fatalf("decoded %s from key %s", e.Key(), key)
		}
		again, err := encode(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode([]byte(key), again); err != nil {
			t.Fatalf("re-encoded record refused: %v", err)
		}
	})
}
