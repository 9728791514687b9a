package admin

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/ingest/registry/registrytest"
	"github.com/iotpipe/iotpipe/internal/logtest"
)

// server is the admin API over a real registry on a test log.
type server struct {
	t   *testing.T
	url string
	reg *registry.Registry
	ca  *pki.CA
}

func newServer(t *testing.T) *server {
	t.Helper()
	reg := registrytest.Start(t, nil)
	ca, err := pki.LoadOrCreateCA(t.TempDir(), pki.CAOptions{Logger: logtest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(Handler(reg, ca, Options{Logger: logtest.Quiet()}))
	t.Cleanup(hs.Close)
	return &server{t: t, url: hs.URL, reg: reg, ca: ca}
}

// do sends method path with body (JSON-encoded unless a string) and
// decodes the answer into out when given; it returns the status.
func (s *server) do(method, path string, body, out any) int {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		var e errorDoc
		if err := json.Unmarshal(b, &e); err != nil || e.Code != resp.StatusCode || e.Message == "" {
			s.t.Errorf("%s %s: %d with a body that is not an error document: %s", method, path, resp.StatusCode, b)
		}
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// want checks a status.
func (s *server) want(code int, method, path string, body, out any) {
	s.t.Helper()
	if got := s.do(method, path, body, out); got != code {
		s.t.Errorf("%s %s: status %d, want %d", method, path, got, code)
	}
}

const allowAll = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}`

func TestThings(t *testing.T) {
	s := newServer(t)
	var th registry.Thing
	s.want(201, "POST", "/api/registry/things", ThingRequest{Name: "lamp-1", TypeName: "lamp", Attributes: map[string]string{"room": "kitchen"}}, &th)
	if th.Name != "lamp-1" || th.ID == "" || th.Version() != 1 {
		t.Errorf("created %+v", th)
	}
	s.want(201, "POST", "/api/registry/things", ThingRequest{Name: "lamp-1", TypeName: "lamp", Attributes: map[string]string{"room": "kitchen"}}, nil) // idempotent, as AWS
	s.want(409, "POST", "/api/registry/things", ThingRequest{Name: "lamp-1", TypeName: "other"}, nil)
	for _, bad := range []string{`{"thingName":"a b"}`, `{"thingName":""}`, `not json`, ``, `{"thingName":"x","color":"red"}`, `{"thingName":"x"} {}`} {
		s.want(400, "POST", "/api/registry/things", bad, nil)
	}
	var upd registry.Thing
	s.want(200, "PATCH", "/api/registry/things/lamp-1", ThingUpdateRequest{Attributes: map[string]string{"floor": "2"}, Merge: true, ExpectedVersion: 1}, &upd)
	if upd.Attributes["room"] != "kitchen" || upd.Attributes["floor"] != "2" || upd.Version() != 2 {
		t.Errorf("merged %+v", upd)
	}
	s.want(409, "PATCH", "/api/registry/things/lamp-1", ThingUpdateRequest{ExpectedVersion: 1}, nil)
	s.want(404, "PATCH", "/api/registry/things/nobody", ThingUpdateRequest{}, nil)
	for i := range 3 {
		s.want(201, "POST", "/api/registry/things", ThingRequest{Name: "z-" + string(rune('a'+i))}, nil)
	}
	var pg Page[*registry.Thing]
	s.want(200, "GET", "/api/registry/things?limit=2", nil, &pg)
	if len(pg.Items) != 2 || pg.Next != "z-a" {
		t.Errorf("first page %d items, next %q", len(pg.Items), pg.Next)
	}
	s.want(200, "GET", "/api/registry/things?limit=2&after="+pg.Next, nil, &pg)
	if len(pg.Items) != 2 || pg.Items[0].Name != "z-b" {
		t.Errorf("second page %+v", pg.Items)
	}
	s.want(400, "GET", "/api/registry/things?limit=0", nil, nil)
	s.want(404, "PUT", "/api/registry/things/lamp-1/principals/operator", nil, nil) // no such principal yet
	s.want(201, "POST", "/api/registry/tokens", TokenRequest{Principal: "operator"}, nil)
	s.want(204, "PUT", "/api/registry/things/lamp-1/principals/operator", nil, nil)
	var d ThingDescription
	s.want(200, "GET", "/api/registry/things/lamp-1", nil, &d)
	if len(d.Principals) != 1 || d.Principals[0] != "operator" || d.Attributes["floor"] != "2" {
		t.Errorf("described %+v", d)
	}
	s.want(204, "DELETE", "/api/registry/things/lamp-1/principals/operator", nil, nil)
	s.want(409, "DELETE", "/api/registry/things/lamp-1?expectedVersion=1", nil, nil)
	s.want(400, "DELETE", "/api/registry/things/lamp-1?expectedVersion=x", nil, nil)
	s.want(204, "DELETE", "/api/registry/things/lamp-1?expectedVersion=2", nil, nil)
	s.want(404, "GET", "/api/registry/things/lamp-1", nil, nil)
	s.want(404, "GET", "/api/registry/nothing", nil, nil)
	s.want(404, "PUT", "/api/registry/things", nil, nil) // no such operation: an error document
}

// A certificate issued through the API: its key matches it, it chains to
// the CA given with it, and it goes through AWS's statuses.
func TestCertificates(t *testing.T) {
	s := newServer(t)
	s.want(201, "POST", "/api/registry/things", ThingRequest{Name: "dev-1"}, nil)
	s.want(201, "POST", "/api/registry/policies", PolicyRequest{Name: "dev", Document: json.RawMessage(allowAll)}, nil)
	s.want(404, "POST", "/api/registry/certificates", CreateCertificateRequest{Thing: "nobody"}, nil)
	s.want(400, "POST", "/api/registry/certificates", CreateCertificateRequest{Thing: "dev-1", ValidityDays: -1}, nil)
	var c CreatedCertificate
	s.want(201, "POST", "/api/registry/certificates", CreateCertificateRequest{Thing: "dev-1", Policies: []string{"dev"}, ValidityDays: 30}, &c)
	if c.Status != registry.StatusActive || c.CommonName != "dev-1" {
		t.Errorf("created %+v", c.Certificate)
	}
	pair, err := tls.X509KeyPair([]byte(c.PEM), []byte(c.KeyPEM))
	if err != nil {
		t.Fatalf("the key does not match the certificate: %v", err)
	}
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(c.CAPEM)) {
		t.Fatal("caCertificatePem does not parse")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the certificate does not chain to the CA given: %v", err)
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore).Hours() / 24; d < 29 || d > 31 {
		t.Errorf("validity %.1f days, want 30", d)
	}
	if ok, _ := s.reg.Attached(c.ID, "dev-1"); !ok {
		t.Error("the certificate is not attached to its thing")
	}
	if ps, _ := s.reg.PrincipalPolicies(c.ID); len(ps) != 1 {
		t.Errorf("policies of the certificate: %v", ps)
	}
	id := c.ID
	s.want(200, "PUT", "/api/registry/certificates/"+id+"/status", StatusRequest{Status: registry.StatusInactive}, nil)
	s.want(400, "PUT", "/api/registry/certificates/"+id+"/status", StatusRequest{Status: "GREEN"}, nil)
	s.want(200, "PUT", "/api/registry/certificates/"+id+"/status", StatusRequest{Status: registry.StatusRevoked}, nil)
	s.want(406, "PUT", "/api/registry/certificates/"+id+"/status", StatusRequest{Status: registry.StatusActive}, nil)
	var got registry.Certificate
	s.want(200, "GET", "/api/registry/certificates/"+strings.ToUpper(id), nil, &got)
	if got.Status != registry.StatusRevoked {
		t.Errorf("status %s after revoke", got.Status)
	}
	s.want(409, "DELETE", "/api/registry/certificates/"+id, nil, nil) // attached to its thing
	s.want(204, "DELETE", "/api/registry/things/dev-1/principals/"+id, nil, nil)
	s.want(204, "DELETE", "/api/registry/certificates/"+id+"?force=true", nil, nil)
	s.want(404, "GET", "/api/registry/certificates/"+id, nil, nil)

	// Bring your own: INACTIVE unless asked otherwise.
	own, err := pki.LoadOrCreateCA(t.TempDir(), pki.CAOptions{Logger: logtest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	is, err := own.Issue(pki.IssueRequest{CommonName: "byo"})
	if err != nil {
		t.Fatal(err)
	}
	var reg registry.Certificate
	s.want(201, "POST", "/api/registry/certificates/register", RegisterCertificateRequest{PEM: string(is.CertPEM)}, &reg)
	if reg.Status != registry.StatusInactive || reg.ID != is.ID {
		t.Errorf("registered %+v", reg)
	}
	s.want(409, "POST", "/api/registry/certificates/register", RegisterCertificateRequest{PEM: string(is.CertPEM)}, nil)
	s.want(400, "POST", "/api/registry/certificates/register", RegisterCertificateRequest{PEM: "junk"}, nil)
	s.want(400, "POST", "/api/registry/certificates/register", RegisterCertificateRequest{PEM: string(own.CertificatePEM())}, nil) // a CA
	var pg Page[*registry.Certificate]
	s.want(200, "GET", "/api/registry/certificates", nil, &pg)
	if len(pg.Items) != 1 || pg.Items[0].ID != is.ID {
		t.Errorf("listed %+v", pg.Items)
	}
}

func TestCAs(t *testing.T) {
	s := newServer(t)
	s.want(201, "POST", "/api/registry/policies", PolicyRequest{Name: "fleet", Document: json.RawMessage(allowAll)}, nil)
	other, err := pki.LoadOrCreateCA(t.TempDir(), pki.CAOptions{Logger: logtest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	var ca registry.CACertificate
	s.want(201, "POST", "/api/registry/cas", RegisterCARequest{PEM: string(other.CertificatePEM()), SetAsActive: true, AllowAutoRegistration: true, AutoActivate: true, Policies: []string{"fleet"}}, &ca)
	if ca.Status != registry.CAActive || ca.AutoRegistration != registry.AutoRegistrationEnable || !ca.AutoActivate || len(ca.Policies) != 1 {
		t.Errorf("registered %+v", ca)
	}
	s.want(409, "POST", "/api/registry/cas", RegisterCARequest{PEM: string(other.CertificatePEM())}, nil)
	is, _ := other.Issue(pki.IssueRequest{CommonName: "leaf"})
	s.want(400, "POST", "/api/registry/cas", RegisterCARequest{PEM: string(is.CertPEM)}, nil) // not a CA
	s.want(406, "DELETE", "/api/registry/cas/"+ca.ID, nil, nil)                               // ACTIVE: AWS's CertificateStateException
	off := false
	var upd registry.CACertificate
	s.want(200, "PATCH", "/api/registry/cas/"+ca.ID, CAUpdateRequest{Status: registry.CAInactive, AutoActivate: &off}, &upd)
	if upd.Status != registry.CAInactive || upd.AutoActivate || len(upd.Policies) != 1 {
		t.Errorf("updated %+v", upd)
	}
	var pg Page[*registry.CACertificate]
	s.want(200, "GET", "/api/registry/cas", nil, &pg)
	if len(pg.Items) != 1 {
		t.Errorf("listed %d", len(pg.Items))
	}
	s.want(204, "DELETE", "/api/registry/cas/"+ca.ID, nil, nil)
	s.want(404, "GET", "/api/registry/cas/"+ca.ID, nil, nil)
}

func TestPoliciesAndTokens(t *testing.T) {
	s := newServer(t)
	s.want(400, "POST", "/api/registry/policies", PolicyRequest{Name: "bad", Document: json.RawMessage(`{"Statement":"nope"}`)}, nil)
	s.want(400, "POST", "/api/registry/policies", `{"policyName":"bad","policyDocument":`+"[1,2"+`}`, nil)
	s.want(201, "POST", "/api/registry/policies", PolicyRequest{Name: "api", Document: json.RawMessage(allowAll)}, nil)
	s.want(409, "POST", "/api/registry/policies", PolicyRequest{Name: "api", Document: json.RawMessage(`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"*","Resource":"*"}]}`)}, nil)
	var tok CreatedToken
	s.want(201, "POST", "/api/registry/tokens", TokenRequest{Principal: "dashboard", Description: "the dashboard", Policies: []string{"api"}}, &tok)
	if !strings.HasPrefix(tok.Secret, registry.TokenPrefix) || tok.Principal != "dashboard" {
		t.Errorf("token %+v", tok)
	}
	if got, err := s.reg.TokenBySecret(tok.Secret); err != nil || got.ID != tok.ID {
		t.Errorf("the secret does not find its token: %v", err)
	}
	var pd PolicyDescription
	s.want(200, "GET", "/api/registry/policies/api", nil, &pd)
	if len(pd.Principals) != 1 || pd.Principals[0] != "dashboard" {
		t.Errorf("principals of api: %v", pd.Principals)
	}
	s.want(409, "DELETE", "/api/registry/policies/api", nil, nil) // attached
	s.want(204, "DELETE", "/api/registry/policies/api/principals/dashboard", nil, nil)
	s.want(404, "PUT", "/api/registry/policies/api/principals/someone", nil, nil) // no such principal
	s.want(204, "PUT", "/api/registry/policies/api/principals/dashboard", nil, nil)
	s.want(400, "PUT", "/api/registry/policies/api/principals/"+strings.Repeat("x", 300), nil, nil)
	var upd registry.Policy
	s.want(200, "PUT", "/api/registry/policies/api", PolicyRequest{Document: json.RawMessage(allowAll), ExpectedVersion: 1}, &upd)
	s.want(409, "PUT", "/api/registry/policies/api", PolicyRequest{Document: json.RawMessage(allowAll), ExpectedVersion: 1}, nil)
	s.want(400, "PUT", "/api/registry/policies/api", PolicyRequest{Name: "other", Document: json.RawMessage(allowAll)}, nil)
	var pg Page[*registry.Token]
	s.want(200, "GET", "/api/registry/tokens", nil, &pg)
	if len(pg.Items) != 1 {
		t.Errorf("tokens listed: %d", len(pg.Items))
	}
	raw, _ := json.Marshal(pg)
	if strings.Contains(string(raw), tok.Secret) {
		t.Error("a token list shows the secret")
	}
	s.want(204, "DELETE", "/api/registry/tokens/"+tok.ID, nil, nil)
	s.want(404, "DELETE", "/api/registry/tokens/"+tok.ID, nil, nil)
	if _, err := s.reg.TokenBySecret(tok.Secret); err == nil {
		t.Error("a revoked token's secret still finds it")
	}
}

// The key of a created certificate is only in the answer: PKCS #8 PEM.
func TestCreatedKeyIsPKCS8(t *testing.T) {
	s := newServer(t)
	s.want(201, "POST", "/api/registry/things", ThingRequest{Name: "k"}, nil)
	var c CreatedCertificate
	s.want(201, "POST", "/api/registry/certificates", CreateCertificateRequest{Thing: "k"}, &c)
	b, _ := pem.Decode([]byte(c.KeyPEM))
	if b == nil || b.Type != "PRIVATE KEY" {
		t.Fatalf("key PEM %q", c.KeyPEM)
	}
	if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
		t.Error(err)
	}
}
