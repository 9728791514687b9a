package registry

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/internal/logtest"
)

func TestThings(t *testing.T) {
	n := newNode(t, logtest.Open(t, 1))
	ctx := testCtx(t)
	th := must[*Thing](t)(n.CreateThing(ctx, Thing{Name: "lamp", TypeName: "Lamp", Attributes: map[string]string{"room": "a"}}))
	if th.Version() != 1 || th.ID == "" || th.Created.IsZero() {
		t.Errorf("created %+v", th)
	}
	// AWS: the same thing again is no error; another is.
	again := must[*Thing](t)(n.CreateThing(ctx, Thing{Name: "lamp", TypeName: "Lamp", Attributes: map[string]string{"room": "a"}}))
	if again.ID != th.ID || again.Version() != 1 {
		t.Errorf("idempotent create gave %+v", again)
	}
	_, err := n.CreateThing(ctx, Thing{Name: "lamp"})
	wantErr(t, err, ErrAlreadyExists)
	_, err = n.CreateThing(ctx, Thing{Name: "bad/name"})
	wantErr(t, err, ErrInvalid)
	_, err = n.CreateThing(ctx, Thing{Name: "x", Attributes: map[string]string{"k": "a b"}})
	wantErr(t, err, ErrInvalid)

	for _, tc := range []struct {
		name string
		u    ThingUpdate
		want map[string]string
		typ  string
		err  error
	}{
		{"merge adds", ThingUpdate{Attributes: map[string]string{"floor": "2"}, Merge: true}, map[string]string{"room": "a", "floor": "2"}, "Lamp", nil},
		{"merge removes an empty value", ThingUpdate{Attributes: map[string]string{"room": ""}, Merge: true}, map[string]string{"floor": "2"}, "Lamp", nil},
		{"nil keeps", ThingUpdate{}, map[string]string{"floor": "2"}, "Lamp", nil},
		{"replace", ThingUpdate{Attributes: map[string]string{"x": "1"}}, map[string]string{"x": "1"}, "Lamp", nil},
		{"remove the type", ThingUpdate{TypeName: new(string)}, map[string]string{"x": "1"}, "", nil},
		{"stale version", ThingUpdate{ExpectedVersion: 1}, nil, "", ErrVersionConflict},
		{"invalid attribute", ThingUpdate{Attributes: map[string]string{"x": "é"}}, nil, "", ErrInvalid},
	} {
		got, err := n.UpdateThing(ctx, "lamp", tc.u)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if fmt.Sprint(got.Attributes) != fmt.Sprint(tc.want) || got.TypeName != tc.typ || got.Created != th.Created {
			t.Errorf("%s: %+v", tc.name, got)
		}
	}
	cur := must[*Thing](t)(n.Thing("lamp"))
	if cur.Version() != 6 {
		t.Errorf("version %d after 5 updates", cur.Version())
	}
	_, err = n.UpdateThing(ctx, "missing", ThingUpdate{})
	wantErr(t, err, ErrNotFound)

	wantErr(t, n.DeleteThing(ctx, "lamp", 1), ErrVersionConflict)
	noErr(t, n.DeleteThing(ctx, "lamp", cur.Version()))
	noErr(t, n.DeleteThing(ctx, "lamp", 0)) // AWS: deleting what is gone succeeds
	_, err = n.Thing("lamp")
	wantErr(t, err, ErrNotFound)

	for i := range 5 {
		must[*Thing](t)(n.CreateThing(ctx, Thing{Name: fmt.Sprint("t", i)}))
	}
	page := must[[]*Thing](t)(n.ListThings(ListOptions{After: "t1", Limit: 2}))
	if len(page) != 2 || page[0].Name != "t2" || page[1].Name != "t3" {
		t.Errorf("page after t1: %v", page)
	}
}

func TestCertificates(t *testing.T) {
	n := newNode(t, logtest.Open(t, 1))
	ctx := testCtx(t)
	ca := testCA(t)
	must[*Thing](t)(n.CreateThing(ctx, Thing{Name: "dev"}))
	must[*Policy](t)(n.CreatePolicy(ctx, "p", []byte(allowAll)))

	// Issued by iotpipe's CA: ACTIVE, attached to its thing.
	c, is, err := n.CreateCertificate(ctx, ca, CreateOptions{Thing: "dev", Policies: []string{"p"}})
	noErr(t, err)
	if c.ID != is.ID || c.Status != StatusActive || c.CommonName != "dev" || c.CAID != "" {
		t.Errorf("created %+v", c)
	}
	if ok, _ := n.Attached(c.ID, "dev"); !ok {
		t.Error("certificate not attached to its thing")
	}
	if ps := must[[]*Policy](t)(n.PrincipalPolicies(c.ID)); len(ps) != 1 || ps[0].Name != "p" {
		t.Errorf("policies %v", ps)
	}
	_, _, err = n.CreateCertificate(ctx, ca, CreateOptions{Thing: "nobody"})
	wantErr(t, err, ErrNotFound)

	// Brought by the user: INACTIVE by default, found in upper case.
	own := issue(t, testCA(t), "byo")
	r := must[*Certificate](t)(n.RegisterCertificate(ctx, own.CertPEM, RegisterOptions{}))
	if r.Status != StatusInactive {
		t.Errorf("registered as %s, want INACTIVE", r.Status)
	}
	if got, err := n.Certificate(strings.ToUpper(own.ID)); err != nil || got.ID != own.ID {
		t.Errorf("lookup in upper case: %v", err)
	}
	_, err = n.RegisterCertificate(ctx, own.CertPEM, RegisterOptions{})
	wantErr(t, err, ErrAlreadyExists)
	_, err = n.RegisterCertificate(ctx, ca.CertificatePEM(), RegisterOptions{})
	wantErr(t, err, ErrInvalid)
	_, err = n.RegisterCertificate(ctx, []byte("junk"), RegisterOptions{})
	wantErr(t, err, ErrInvalid)
	_, err = n.RegisterCertificate(ctx, issue(t, ca, "x").CertPEM, RegisterOptions{Status: StatusPendingActivation})
	wantErr(t, err, ErrInvalid)

	// Under a registered CA: its id is recorded and listed by CA.
	reg := must[*CACertificate](t)(n.RegisterCA(ctx, ca.CertificatePEM(), CAOptions{}))
	under := must[*Certificate](t)(n.RegisterCertificate(ctx, issue(t, ca, "under").CertPEM, RegisterOptions{Status: StatusActive}))
	if under.CAID != reg.ID {
		t.Errorf("CA id %q, want %q", under.CAID, reg.ID)
	}
	if l := must[[]*Certificate](t)(n.ListCertificatesByCA(reg.ID, ListOptions{})); len(l) != 1 || l[0].ID != under.ID {
		t.Errorf("by CA: %v", l)
	}

	// Status changes follow AWS's rules.
	must[*Certificate](t)(n.ActivateCertificate(ctx, r.ID))
	must[*Certificate](t)(n.DeactivateCertificate(ctx, r.ID))
	rv := must[*Certificate](t)(n.RevokeCertificate(ctx, r.ID))
	if rv.Status != StatusRevoked {
		t.Errorf("status %s", rv.Status)
	}
	_, err = n.ActivateCertificate(ctx, r.ID)
	wantErr(t, err, ErrCertificateState)
	_, err = n.ActivateCertificate(ctx, strings.Repeat("0", 64))
	wantErr(t, err, ErrNotFound)
	_, err = n.ActivateCertificate(ctx, "nope")
	wantErr(t, err, ErrInvalid)

	// Delete: not ACTIVE, no thing; policies only with force.
	wantErr(t, n.DeleteCertificate(ctx, c.ID, false), ErrCertificateState)
	must[*Certificate](t)(n.DeactivateCertificate(ctx, c.ID))
	wantErr(t, n.DeleteCertificate(ctx, c.ID, false), ErrDeleteConflict)
	noErr(t, n.DetachThingPrincipal(ctx, "dev", c.ID))
	wantErr(t, n.DeleteCertificate(ctx, c.ID, false), ErrDeleteConflict)
	noErr(t, n.DeleteCertificate(ctx, c.ID, true))
	_, err = n.Certificate(c.ID)
	wantErr(t, err, ErrNotFound)
	if ps := must[[]string](t)(n.PolicyPrincipals("p")); len(ps) != 0 {
		t.Errorf("forced delete left attachments: %v", ps)
	}
	noErr(t, n.DeletePolicy(ctx, "p"))
}

func TestCAs(t *testing.T) {
	n := newNode(t, logtest.Open(t, 1))
	ctx := testCtx(t)
	ca := testCA(t)
	_, err := n.RegisterCA(ctx, ca.CertificatePEM(), CAOptions{Policies: []string{"missing"}})
	wantErr(t, err, ErrNotFound)
	_, err = n.RegisterCA(ctx, issue(t, ca, "leaf").CertPEM, CAOptions{})
	wantErr(t, err, ErrInvalid)
	reg := must[*CACertificate](t)(n.RegisterCA(ctx, ca.CertificatePEM(), CAOptions{Active: true, AutoRegistration: true, AutoActivate: true}))
	if reg.Status != CAActive || reg.AutoRegistration != AutoRegistrationEnable || !reg.AutoActivate || reg.KeyID == "" {
		t.Errorf("registered %+v", reg)
	}
	_, err = n.RegisterCA(ctx, ca.CertificatePEM(), CAOptions{})
	wantErr(t, err, ErrAlreadyExists)

	dev := issue(t, ca, "d").Certificate
	found := must[[]*CACertificate](t)(n.CAsFor(pki.IssuerOf(dev)))
	if len(found) != 1 || found[0].ID != reg.ID {
		t.Errorf("CAs for a device: %v", found)
	}
	// Another CA with the same subject is a candidate by subject only
	// (its key id differs); the chain check refuses it (TestRegisterJIT).
	otherDev := issue(t, testCA(t), "o").Certificate
	if found := must[[]*CACertificate](t)(n.CAsFor(pki.IssuerOf(otherDev))); len(found) != 1 {
		t.Errorf("candidates by subject for another CA's device: %v", found)
	}
	if found := must[[]*CACertificate](t)(n.CAsFor(pki.Issuer{KeyID: otherDev.AuthorityKeyId})); len(found) != 0 {
		t.Errorf("candidates by another CA's key id: %v", found)
	}

	wantErr(t, n.DeleteCA(ctx, reg.ID), ErrCertificateState)
	off := must[*CACertificate](t)(n.UpdateCA(ctx, reg.ID, CAUpdate{ExpectedVersion: 1, Status: CAInactive}))
	if off.Status != CAInactive || off.Version() != 2 {
		t.Errorf("updated %+v", off)
	}
	_, err = n.UpdateCA(ctx, reg.ID, CAUpdate{ExpectedVersion: 1})
	wantErr(t, err, ErrVersionConflict)
	_, err = n.UpdateCA(ctx, reg.ID, CAUpdate{Status: "ON"})
	wantErr(t, err, ErrInvalid)
	noErr(t, n.DeleteCA(ctx, reg.ID))
	if found := must[[]*CACertificate](t)(n.CAsFor(pki.IssuerOf(dev))); len(found) != 0 {
		t.Errorf("deleted CA still found: %v", found)
	}
}

func TestPolicies(t *testing.T) {
	checked := 0
	n := startNode(t, logtest.Open(t, 1), t.TempDir(), Options{CheckPolicy: func(doc []byte) error {
		checked++
		if strings.Contains(string(doc), "Deny-me") {
			return errors.New("statement 1: unknown effect Deny-me")
		}
		return nil
	}})
	ctx := testCtx(t)
	p := must[*Policy](t)(n.CreatePolicy(ctx, "p", []byte(allowAll)))
	if p.Version() != 1 || string(p.Document) != allowAll {
		t.Errorf("created %+v", p)
	}
	if got := must[*Policy](t)(n.Policy("p")); string(got.Document) != allowAll {
		t.Errorf("read back %s", got.Document)
	}
	_, err := n.CreatePolicy(ctx, "p", []byte(allowAll))
	wantErr(t, err, ErrAlreadyExists)
	big := `{"Statement":"` + strings.Repeat("x", MaxPolicyDocument) + `"}`
	spaced := `{"Statement":"x"` + strings.Repeat(" ", 3000) + `}`
	for name, doc := range map[string]string{
		"not JSON":       `{"Statement":`,
		"not an object":  `["Allow"]`,
		"too long":       big,
		"checker refuse": `{"Effect":"Deny-me"}`,
	} {
		_, err := n.CreatePolicy(ctx, "q", []byte(doc))
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	must[*Policy](t)(n.CreatePolicy(ctx, "spaced", []byte(spaced))) // white space does not count
	if checked == 0 {
		t.Error("CheckPolicy never called")
	}

	up := must[*Policy](t)(n.UpdatePolicy(ctx, "p", []byte(`{"Version":"2012-10-17","Statement":[]}`), 1))
	if up.Version() != 2 {
		t.Errorf("version %d", up.Version())
	}
	_, err = n.UpdatePolicy(ctx, "p", []byte(allowAll), 1)
	wantErr(t, err, ErrVersionConflict)

	// Attach to a certificate and to a token principal.
	ca := testCA(t)
	must[*Thing](t)(n.CreateThing(ctx, Thing{Name: "d"}))
	c, _, err := n.CreateCertificate(ctx, ca, CreateOptions{Thing: "d"})
	noErr(t, err)
	noErr(t, n.AttachPolicy(ctx, "p", c.ID))
	noErr(t, n.AttachPolicy(ctx, "p", c.ID)) // twice is once
	wantErr(t, n.AttachPolicy(ctx, "p", "nobody"), ErrNotFound)
	wantErr(t, n.AttachPolicy(ctx, "p", strings.Repeat("1", 64)), ErrNotFound)
	wantErr(t, n.AttachPolicy(ctx, "missing", c.ID), ErrNotFound)
	wantErr(t, n.AttachPolicy(ctx, "p", "no/slash"), ErrInvalid)
	if _, _, err := n.CreateToken(ctx, TokenOptions{Principal: "ops"}); err != nil {
		t.Fatal(err)
	}
	noErr(t, n.AttachPolicy(ctx, "p", "ops"))
	if ps := must[[]string](t)(n.PolicyPrincipals("p")); len(ps) != 2 {
		t.Errorf("principals of p: %v", ps)
	}
	wantErr(t, n.DeletePolicy(ctx, "p"), ErrDeleteConflict)
	noErr(t, n.DetachPolicy(ctx, "p", c.ID))
	noErr(t, n.DetachPolicy(ctx, "p", c.ID)) // detaching what is not attached succeeds
	noErr(t, n.DetachPolicy(ctx, "p", "ops"))
	noErr(t, n.DeletePolicy(ctx, "p"))
	wantErr(t, n.DeletePolicy(ctx, "p"), ErrNotFound)
}

func TestTokens(t *testing.T) {
	n := newNode(t, logtest.Open(t, 1))
	ctx := testCtx(t)
	must[*Policy](t)(n.CreatePolicy(ctx, "api", []byte(allowAll)))
	tok, secret, err := n.CreateToken(ctx, TokenOptions{Principal: "admin", Description: "HTTP API", Policies: []string{"api"}})
	noErr(t, err)
	if !strings.HasPrefix(secret, TokenPrefix) || len(secret) != len(TokenPrefix)+43 {
		t.Errorf("secret %q", secret)
	}
	got := must[*Token](t)(n.TokenBySecret(secret))
	if got.ID != tok.ID || got.Principal != "admin" {
		t.Errorf("by secret: %+v", got)
	}
	b, _ := json.Marshal(must[[]*Token](t)(n.ListTokens(ListOptions{})))
	if strings.Contains(string(b), secret) || strings.Contains(string(b), secret[len(TokenPrefix):]) {
		t.Error("the secret is kept")
	}
	if ps := must[[]*Policy](t)(n.PrincipalPolicies("admin")); len(ps) != 1 {
		t.Errorf("policies of the token principal: %v", ps)
	}
	_, err = n.TokenBySecret(secret + "x")
	wantErr(t, err, ErrNotFound)
	_, _, err = n.CreateToken(ctx, TokenOptions{Principal: "bad principal"})
	wantErr(t, err, ErrInvalid)
	_, _, err = n.CreateToken(ctx, TokenOptions{Principal: "x", Policies: []string{"missing"}})
	wantErr(t, err, ErrNotFound)

	ends := make(chan End, 1)
	defer n.Watch(func(c Change) {
		if e, ok := c.Ends(); ok {
			ends <- e
		}
	})()
	noErr(t, n.RevokeToken(ctx, tok.ID))
	_, err = n.TokenBySecret(secret)
	wantErr(t, err, ErrNotFound)
	select {
	case e := <-ends:
		if e.Principal != "admin" || e.TokenID != tok.ID {
			t.Errorf("end %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Error("no end for the revoked token")
	}
	wantErr(t, n.RevokeToken(ctx, tok.ID), ErrNotFound)
}

// A token created with a given secret (an operator's bootstrap token)
// authenticates with it; a malformed or taken secret is refused.
func TestTokenWithSecret(t *testing.T) {
	n := newNode(t, logtest.Open(t, 1))
	ctx := testCtx(t)
	secret := TokenPrefix + strings.Repeat("A", 43)
	tok, got, err := n.CreateToken(ctx, TokenOptions{Principal: "admin", Secret: secret})
	noErr(t, err)
	if got != secret {
		t.Errorf("secret %q, want the given one", got)
	}
	if by := must[*Token](t)(n.TokenBySecret(secret)); by.ID != tok.ID {
		t.Errorf("by secret: %+v", by)
	}
	_, _, err = n.CreateToken(ctx, TokenOptions{Principal: "other", Secret: secret})
	wantErr(t, err, ErrAlreadyExists)
	for _, bad := range []string{"secret", TokenPrefix + "short", strings.Repeat("A", 48), TokenPrefix + strings.Repeat("!", 43)} {
		_, _, err = n.CreateToken(ctx, TokenOptions{Principal: "admin", Secret: bad})
		wantErr(t, err, ErrInvalid)
	}
}

// Just-in-time registration: what AWS's CA settings allow, the thing
// and policies it attaches, and the event it returns.
func TestRegisterJIT(t *testing.T) {
	n := startNode(t, logtest.Open(t, 1), t.TempDir(), Options{AccountID: "123456789012"})
	ctx := testCtx(t)
	must[*Policy](t)(n.CreatePolicy(ctx, "dev", []byte(allowAll)))
	must[*Policy](t)(n.CreatePolicy(ctx, "gone", []byte(allowAll)))
	pending, active, off, noauto := testCA(t), testCA(t), testCA(t), testCA(t)
	pendingCA := must[*CACertificate](t)(n.RegisterCA(ctx, pending.CertificatePEM(), CAOptions{Active: true, AutoRegistration: true, Policies: []string{"dev", "gone"}}))
	must[*CACertificate](t)(n.RegisterCA(ctx, active.CertificatePEM(), CAOptions{Active: true, AutoRegistration: true, AutoActivate: true}))
	must[*CACertificate](t)(n.RegisterCA(ctx, off.CertificatePEM(), CAOptions{AutoRegistration: true}))
	must[*CACertificate](t)(n.RegisterCA(ctx, noauto.CertificatePEM(), CAOptions{Active: true}))
	noErr(t, n.DeletePolicy(ctx, "gone"))
	past, _ := pki.LoadOrCreateCA(t.TempDir(), pki.CAOptions{Now: func() time.Time { return time.Now().Add(-72 * time.Hour) }, Logger: logtest.Quiet()})
	expired, err := past.Issue(pki.IssueRequest{CommonName: "old", Validity: time.Hour})
	noErr(t, err)
	must[*CACertificate](t)(n.RegisterCA(ctx, past.CertificatePEM(), CAOptions{Active: true, AutoRegistration: true}))

	jit := func(c *x509.Certificate) (*JITResult, error) { return n.RegisterJIT(ctx, []*x509.Certificate{c}) }
	for _, tc := range []struct {
		name string
		ca   *pki.CA
		cn   string
		err  error
	}{
		{"inactive CA", off, "a", ErrCertificateState},
		{"auto-registration off", noauto, "b", ErrCertificateState},
		{"unknown CA", testCA(t), "c", ErrNotFound},
	} {
		_, err := jit(issue(t, tc.ca, tc.cn).Certificate)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
		}
	}
	_, err = jit(expired.Certificate)
	wantErr(t, err, ErrInvalid)

	dev := issue(t, pending, "greenhouse-7")
	res := must[*JITResult](t)(jit(dev.Certificate))
	if !res.Registered || res.Certificate.Status != StatusPendingActivation || res.Certificate.CAID != pendingCA.ID ||
		res.Thing != "greenhouse-7" || fmt.Sprint(res.Policies) != "[dev]" {
		t.Errorf("result %+v", res)
	}
	if res.Topic != "$aws/events/certificates/registered/"+pendingCA.ID {
		t.Errorf("topic %s", res.Topic)
	}
	var ev map[string]any
	noErr(t, json.Unmarshal(res.Event.Payload(), &ev))
	for k, want := range map[string]any{
		"certificateId": dev.ID, "caCertificateId": pendingCA.ID, "certificateStatus": "PENDING_ACTIVATION", "awsAccountId": "123456789012",
	} {
		if ev[k] != want {
			t.Errorf("event %s = %v, want %v", k, ev[k], want)
		}
	}
	if _, ok := ev["timestamp"].(float64); !ok {
		t.Errorf("event timestamp %v", ev["timestamp"])
	}
	if _, err := n.Thing("greenhouse-7"); err != nil {
		t.Errorf("thing not created: %v", err)
	}
	again := must[*JITResult](t)(jit(dev.Certificate))
	if again.Registered || again.Event != nil || again.CA == nil || again.CA.ID != pendingCA.ID {
		t.Errorf("second connect %+v", again)
	}

	// AutoActivate; a thing that exists is attached, not created again;
	// a common name that is no thing name registers no thing.
	must[*Thing](t)(n.CreateThing(ctx, Thing{Name: "known", Attributes: map[string]string{"k": "v"}}))
	res = must[*JITResult](t)(jit(issue(t, active, "known").Certificate))
	if res.Certificate.Status != StatusActive || res.Thing != "known" {
		t.Errorf("auto-activated %+v", res)
	}
	if th := must[*Thing](t)(n.Thing("known")); th.Version() != 1 {
		t.Errorf("existing thing rewritten: %+v", th)
	}
	res = must[*JITResult](t)(jit(issue(t, active, "not a thing/name").Certificate))
	if !res.Registered || res.Thing != "" {
		t.Errorf("no thing name: %+v", res)
	}
}

// A registered CA's certificate that was already registered by hand is
// returned as is, whatever its status.
func TestRegisterJITKnownCertificate(t *testing.T) {
	n := newNode(t, logtest.Open(t, 1))
	ctx := testCtx(t)
	ca := testCA(t)
	must[*CACertificate](t)(n.RegisterCA(ctx, ca.CertificatePEM(), CAOptions{Active: true, AutoRegistration: true, AutoActivate: true}))
	dev := issue(t, ca, "d")
	must[*Certificate](t)(n.RegisterCertificate(ctx, dev.CertPEM, RegisterOptions{Status: StatusRevoked}))
	res := must[*JITResult](t)(n.RegisterJIT(ctx, []*x509.Certificate{dev.Certificate}))
	if res.Registered || res.Certificate.Status != StatusRevoked {
		t.Errorf("%+v", res)
	}
}
