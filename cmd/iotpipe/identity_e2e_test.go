package main

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
)

// The HTTP API needs a token whose policies allow the request, except
// /healthz and /readyz; the first start makes the admin token (here the
// --bootstrap-token the tests pass) and keeps it for the CLI; the CLI
// manages the registry through the API; a device token's HTTP publish
// carries its principal into the log; a revoked token stops working.
func TestIdentityAPIAndCLI(t *testing.T) {
	in := newInstance(t)
	in.start()
	tokFile := filepath.Join(in.dataDir, AdminTokenFile)
	fi, err := os.Stat(tokFile)
	if err != nil {
		t.Fatalf("no admin token file after the first start: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", tokFile, fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(tokFile); strings.TrimSpace(string(b)) != testAPIToken {
		t.Errorf("%s holds %q, want the bootstrap token", tokFile, b)
	}

	// A client of its own: no token unless the request sets one.
	raw := &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second}
	call := func(method, path, token, body string) int {
		t.Helper()
		req, _ := http.NewRequest(method, in.url(path), strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := raw.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	routes := []struct{ method, path, body string }{
		{"GET", "/api/rules", ""}, {"GET", "/metrics", ""}, {"POST", "/api/sql", `{"query":"SELECT 1"}`},
		{"POST", "/topics/devices/lamp-1/temp", `{"t":1}`}, {"GET", "/things/lamp-1/shadow", ""},
		{"GET", "/api/registry/things", ""}, {"GET", "/api/events", ""}, {"GET", "/api/things/lamp-1", ""},
		{"GET", "/api/commands/x", ""},
	}
	for _, r := range routes {
		if got := call(r.method, r.path, "", r.body); got != 401 {
			t.Errorf("%s %s without a token: %d, want 401", r.method, r.path, got)
		}
		if got := call(r.method, r.path, "iotp_"+strings.Repeat("A", 43), r.body); got != 401 {
			t.Errorf("%s %s with an unknown token: %d, want 401", r.method, r.path, got)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if got := call("GET", p, "", ""); got != 200 {
			t.Errorf("%s without a token: %d, want 200", p, got)
		}
	}

	// The CLI, with the token it finds in the data dir.
	api := []string{"--api", in.url(""), "--data-dir", in.dataDir}
	cli := func(args ...string) string {
		t.Helper()
		code, out, errOut := runIotpipe(t, append(args, api...)...)
		if code != 0 {
			t.Fatalf("iotpipe %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cli("policies", "create", "reader", write("reader.json", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iotpipe:Read","Resource":"*"}]}`))
	cli("policies", "create", "device", write("device.json", `{"Version":"2012-10-17","Statement":[
	  {"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:*:*:topic/devices/${iot:Connection.Thing.ThingName}/*"},
	  {"Effect":"Allow","Action":"iot:GetThingShadow","Resource":"arn:aws:iot:*:*:thing/${iot:Connection.Thing.ThingName}"}]}`))
	secretOf := func(out string) string {
		t.Helper()
		s, _, _ := strings.Cut(out, "\n")
		if !strings.HasPrefix(s, "iotp_") {
			t.Fatalf("tokens create printed %q", out)
		}
		return s
	}
	reader := secretOf(cli("tokens", "create", "--principal", "grafana", "--policy", "reader"))
	cli("things", "create", "lamp-1", "--attr", "room=hall")
	lamp := secretOf(cli("tokens", "create", "--principal", "lamp1", "--policy", "device"))
	cli("things", "attach", "lamp-1", "--principal", "lamp1")
	if out := cli("things", "describe", "lamp-1"); !strings.Contains(out, `"lamp1"`) || !strings.Contains(out, `"hall"`) {
		t.Errorf("things describe: %s", out)
	}
	for _, c := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/api/rules", reader, "", 200},
		{"GET", "/metrics", reader, "", 200},
		{"GET", "/api/registry/things", reader, "", 403},
		{"POST", "/api/sql", reader, `{"query":"SELECT 1"}`, 403},
		{"POST", "/topics/devices/lamp-1/temp", reader, `{"t":1}`, 403},
		{"POST", "/topics/devices/lamp-1/temp", lamp, `{"t":21.5}`, 200},
		{"POST", "/topics/devices/lamp-2/temp", lamp, `{"t":99}`, 403},
		{"GET", "/api/rules", lamp, "", 403},
		{"GET", "/api/registry/things", testAPIToken, "", 200},
	} {
		if got := call(c.method, c.path, c.token, c.body); got != c.want {
			t.Errorf("%s %s as %s: %d, want %d", c.method, c.path, c.token[:9], got, c.want)
		}
	}
	// The allowed publish is in the log under the token's principal;
	// the denied one is not.
	var found int
	for _, r := range in.readEvents() {
		if strings.Contains(string(r.Value), "99") {
			t.Errorf("a denied publish is in the log: %s", r.Value)
		}
		if string(schemas.HeaderValue(r.Headers, schemas.HeaderPrincipal)) == "lamp1" && strings.Contains(string(r.Value), "21.5") {
			found++
		}
	}
	if found != 1 {
		t.Errorf("%d events of principal lamp1 with the allowed payload, want 1", found)
	}

	// Certificates through the CLI: files written once, the key 0600.
	certs := filepath.Join(dir, "certs")
	out := cli("certs", "create", "--thing", "lamp-1", "--out", certs)
	if !strings.Contains(out, "ACTIVE") {
		t.Errorf("certs create: %s", out)
	}
	if fi, err := os.Stat(filepath.Join(certs, "lamp-1.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the key file: %v %v", fi, err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(certs, "lamp-1.crt"), filepath.Join(certs, "lamp-1.key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(certs, "ca.pem"))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	leaf, _ := x509.ParseCertificate(pair.Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the device certificate does not chain to ca.pem: %v", err)
	}
	if code, _, errOut := runIotpipe(t, append([]string{"certs", "create", "--thing", "lamp-1", "--out", certs}, api...)...); code != 1 || !strings.Contains(errOut, "not overwriting") {
		t.Errorf("a second certs create into the same dir: exit %d, %s", code, errOut)
	}
	if code, _, errOut := runIotpipe(t, append([]string{"things", "create", "bad name"}, api...)...); code != 1 || !strings.Contains(errOut, "400") {
		t.Errorf("a bad thing name: exit %d, %s", code, errOut)
	}
	if code, _, _ := runIotpipe(t, "things", "list", "--api", in.url(""), "--data-dir", t.TempDir()); code != 1 {
		t.Errorf("the CLI without a token: exit %d, want 1", code)
	}

	// Revoked: the token stops working.
	var id string
	for _, line := range strings.Split(cli("tokens", "list"), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == "grafana" {
			id = f[0]
		}
	}
	if id == "" {
		t.Fatal("tokens list does not show grafana's token")
	}
	cli("tokens", "revoke", id)
	deadline := time.Now().Add(10 * time.Second)
	for call("GET", "/api/rules", reader, "") != 401 {
		if time.Now().After(deadline) {
			t.Fatal("a revoked token still authenticates after 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// --http-tls serves the API over TLS with the server certificate of
// iotpipe's CA; the CLI verifies it with <data-dir>/pki/ca.pem.
func TestHTTPAPIOverTLS(t *testing.T) {
	in := newInstance(t)
	in.httpsScheme = true
	in.start("--http-tls")
	caPEM, err := os.ReadFile(filepath.Join(in.dataDir, "pki", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	c := &http.Client{Transport: tokenTransport{&http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}}
	resp, err := c.Get(in.url("/api/rules"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /api/rules over TLS: %d", resp.StatusCode)
	}
	if code, out, errOut := runIotpipe(t, "things", "create", "tls-1", "--api", in.url(""), "--data-dir", in.dataDir); code != 0 {
		t.Errorf("the CLI over https: exit %d: %s%s", code, out, errOut)
	}
	if _, err := (&http.Client{Transport: &http.Transport{}}).Get(in.url("/healthz")); err == nil {
		t.Error("a client that does not trust iotpipe's CA got an answer")
	}
}
