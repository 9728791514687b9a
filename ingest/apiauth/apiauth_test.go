package apiauth

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/ingest/registry/registrytest"
	"github.com/iotpipe/iotpipe/internal/logtest"
)

const (
	readOnly = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iotpipe:Read","Resource":"*"}]}`
	admin    = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`
	// A device's token: its own thing's shadow and topics only.
	device = `{"Version":"2012-10-17","Statement":[
	  {"Effect":"Allow","Action":["iot:GetThingShadow","iot:UpdateThingShadow"],"Resource":"arn:aws:iot:us-east-1:123456789012:thing/${iot:Connection.Thing.ThingName}"},
	  {"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:us-east-1:123456789012:topic/devices/${iot:Connection.Thing.ThingName}/*"}]}`
)

// fixture is an authenticator over a real registry and a server whose
// routes each require one action.
type fixture struct {
	reg *registry.Registry
	a   *Authenticator
	url string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	reg := registrytest.Start(t, nil)
	a := New(reg, Options{Logger: logtest.Quiet()})
	t.Cleanup(a.Close)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, FromContext(r.Context()).Name)
	})
	mux := http.NewServeMux()
	mux.Handle("GET /api/rules", a.Require(ActionRead, Fixed("api/rules"), ok))
	mux.Handle("POST /api/sql", a.Require(ActionQuery, Fixed("api/sql"), ok))
	mux.Handle("/api/registry/", a.Require(ActionAdmin, Fixed("api/registry"), ok))
	mux.Handle("GET /things/{thing}/shadow", a.Require("iot:GetThingShadow", func(r *http.Request) string { return "thing/" + r.PathValue("thing") }, ok))
	mux.Handle("POST /topics/{topic...}", a.Require("iot:Publish", func(r *http.Request) string { return "topic/" + r.PathValue("topic") }, ok))
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return &fixture{reg: reg, a: a, url: hs.URL}
}

func (f *fixture) token(t *testing.T, principal, policyName, doc string) string {
	t.Helper()
	ctx := registrytest.Ctx(t)
	if _, err := f.reg.Policy(policyName); err != nil {
		if _, err := f.reg.CreatePolicy(ctx, policyName, []byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	_, secret, err := f.reg.CreateToken(ctx, registry.TokenOptions{Principal: principal, Policies: []string{policyName}})
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// status sends method path with the Authorization header auth ("" for
// none) and returns the status and body.
func (f *fixture) status(t *testing.T, method, path, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, f.url+path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 401 && resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("%s %s: 401 without WWW-Authenticate", method, path)
	}
	return resp.StatusCode, string(b)
}

func TestRequire(t *testing.T) {
	f := newFixture(t)
	root := f.token(t, "root", "admin", admin)
	reader := f.token(t, "grafana", "read", readOnly)
	if _, err := f.reg.CreateThing(registrytest.Ctx(t), registry.Thing{Name: "lamp-1"}); err != nil {
		t.Fatal(err)
	}
	lamp := f.token(t, "lamp1token", "device", device)
	if err := f.reg.AttachThingPrincipal(registrytest.Ctx(t), "lamp-1", "lamp1token"); err != nil {
		t.Fatal(err)
	}
	bearer := func(s string) string { return "Bearer " + s }
	cases := []struct {
		name, method, path, auth string
		want                     int
	}{
		{"no token", "GET", "/api/rules", "", 401},
		{"not bearer", "GET", "/api/rules", "Basic " + root, 401},
		{"unknown token", "GET", "/api/rules", bearer(registry.TokenPrefix + strings.Repeat("x", 43)), 401},
		{"junk token", "GET", "/api/rules", bearer("junk"), 401},
		{"admin reads", "GET", "/api/rules", bearer(root), 200},
		{"admin queries", "POST", "/api/sql", bearer(root), 200},
		{"admin manages the registry", "GET", "/api/registry/things", bearer(root), 200},
		{"scheme case does not matter", "GET", "/api/rules", "bearer " + root, 200},
		{"reader reads", "GET", "/api/rules", bearer(reader), 200},
		{"reader may not query", "POST", "/api/sql", bearer(reader), 403},
		{"reader may not manage", "GET", "/api/registry/things", bearer(reader), 403},
		{"reader may not publish", "POST", "/topics/devices/lamp-1/x", bearer(reader), 403},
		{"device reads its shadow", "GET", "/things/lamp-1/shadow", bearer(lamp), 200},
		{"device may not read another's", "GET", "/things/lamp-2/shadow", bearer(lamp), 403},
		{"device publishes under its thing", "POST", "/topics/devices/lamp-1/temp", bearer(lamp), 200},
		{"device may not publish elsewhere", "POST", "/topics/devices/lamp-2/temp", bearer(lamp), 403},
		{"device may not read rules", "GET", "/api/rules", bearer(lamp), 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, body := f.status(t, c.method, c.path, c.auth)
			if got != c.want {
				t.Errorf("%s %s: %d (%s), want %d", c.method, c.path, got, body, c.want)
			}
		})
	}
	if got, body := f.status(t, "GET", "/api/rules", bearer(reader)); body != "grafana" {
		t.Errorf("the handler sees principal %q (%d), want grafana", body, got)
	}
}

// A revoked token, a detached policy: the next request sees it (the
// cache empties on registry changes).
func TestChangesApply(t *testing.T) {
	f := newFixture(t)
	ctx := registrytest.Ctx(t)
	secret := f.token(t, "grafana", "read", readOnly)
	auth := "Bearer " + secret
	if got, _ := f.status(t, "GET", "/api/rules", auth); got != 200 {
		t.Fatalf("before: %d", got)
	}
	if err := f.reg.DetachPolicy(ctx, "read", "grafana"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "403 after the policy is detached", func() bool { got, _ := f.status(t, "GET", "/api/rules", auth); return got == 403 })
	if err := f.reg.AttachPolicy(ctx, "read", "grafana"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "200 once attached again", func() bool { got, _ := f.status(t, "GET", "/api/rules", auth); return got == 200 })
	tok, err := f.reg.TokenBySecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.reg.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "401 once revoked", func() bool { got, _ := f.status(t, "GET", "/api/rules", auth); return got == 401 })
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func BenchmarkAuthenticateCached(b *testing.B) {
	reg := registrytest.Start(b, nil)
	a := New(reg, Options{Logger: logtest.Quiet()})
	defer a.Close()
	ctx := registrytest.Ctx(b)
	if _, err := reg.CreatePolicy(ctx, "read", []byte(readOnly)); err != nil {
		b.Fatal(err)
	}
	_, secret, err := reg.CreateToken(ctx, registry.TokenOptions{Principal: "p", Policies: []string{"read"}})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/api/rules", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	b.ReportAllocs()
	for b.Loop() {
		p, err := a.Authenticate(req)
		if err != nil || !p.Allow(ActionRead, "api/rules") {
			b.Fatal(err)
		}
	}
}
