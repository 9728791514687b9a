package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newCA(t testing.TB, dir string, now func() time.Time) *CA {
	t.Helper()
	ca, err := LoadOrCreateCA(dir, CAOptions{CommonName: "test CA", Now: now, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestLoadOrCreateCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca := newCA(t, dir, nil)
	if m := mode(t, dir); m != 0o700 {
		t.Errorf("CA directory mode %v, want 0700", m)
	}
	if m := mode(t, filepath.Join(dir, CAKeyFile)); m != 0o600 {
		t.Errorf("CA key mode %v, want 0600", m)
	}
	c := ca.Certificate()
	if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA certificate is not a signing CA: %+v", c)
	}
	if d := c.NotAfter.Sub(c.NotBefore); d < 19*365*24*time.Hour {
		t.Errorf("CA lifetime %v, want about 20 years", d)
	}
	again := newCA(t, dir, nil)
	if !again.Certificate().Equal(c) {
		t.Error("a second start made another CA")
	}

	// A key whose certificate was lost gets a new certificate for the
	// same key.
	if err := os.Remove(filepath.Join(dir, CACertFile)); err != nil {
		t.Fatal(err)
	}
	re := newCA(t, dir, nil)
	if re.Certificate().Equal(c) || !samePublicKey(re.Certificate().PublicKey, c.PublicKey) {
		t.Error("lost certificate: want a new certificate of the same key")
	}

	// Another CA's certificate beside this key is refused.
	other := newCA(t, t.TempDir(), nil)
	if err := os.WriteFile(filepath.Join(dir, CACertFile), other.CertificatePEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(dir, CAOptions{Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("mismatched pair: err %v", err)
	}

	// An expired CA is refused with what to do.
	past := time.Now().Add(-30 * 365 * 24 * time.Hour)
	old := t.TempDir()
	newCA(t, old, func() time.Time { return past })
	if _, err := LoadOrCreateCA(old, CAOptions{Logger: quiet()}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired CA: err %v", err)
	}
}

func TestIssue(t *testing.T) {
	ca := newCA(t, t.TempDir(), nil)
	is, err := ca.Issue(IssueRequest{CommonName: "sensor-1"})
	if err != nil {
		t.Fatal(err)
	}
	c := is.Certificate
	if c.Subject.CommonName != "sensor-1" || c.IsCA {
		t.Errorf("subject %v, CA %v", c.Subject, c.IsCA)
	}
	sum := sha256.Sum256(c.Raw)
	if is.ID != hex.EncodeToString(sum[:]) || len(is.ID) != 64 {
		t.Errorf("id %s", is.ID)
	}
	if d := c.NotAfter.Sub(time.Now()); d < 700*24*time.Hour || d > 731*24*time.Hour {
		t.Errorf("device lifetime %v, want 2 years", d)
	}
	if err := VerifyChain(c, nil, ca.Certificate(), time.Now()); err != nil {
		t.Errorf("issued certificate does not verify: %v", err)
	}
	if _, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM); err != nil {
		t.Errorf("key and certificate are not a pair: %v", err)
	}
	if _, err := ParseDevicePEM(is.CertPEM, time.Now()); err != nil {
		t.Errorf("issued certificate refused as a device certificate: %v", err)
	}
	// A certificate never outlives its CA.
	long, err := ca.Issue(IssueRequest{CommonName: "x", Validity: 100 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if long.Certificate.NotAfter.After(ca.Certificate().NotAfter) {
		t.Error("device certificate outlives the CA")
	}
	if _, err := ca.Issue(IssueRequest{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("no common name: err %v", err)
	}
}

func TestWriteDeviceFiles(t *testing.T) {
	ca := newCA(t, t.TempDir(), nil)
	is, err := ca.Issue(IssueRequest{CommonName: "sensor-1"})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	f, err := WriteDeviceFiles(out, "sensor-1", is, ca.CertificatePEM())
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(t, f.Key); m != 0o600 {
		t.Errorf("key mode %v", m)
	}
	if _, err := tls.LoadX509KeyPair(f.Cert, f.Key); err != nil {
		t.Error(err)
	}
	// Never overwritten; a second thing shares ca.pem.
	if _, err := WriteDeviceFiles(out, "sensor-1", is, ca.CertificatePEM()); err == nil {
		t.Error("overwrote an existing key")
	}
	is2, _ := ca.Issue(IssueRequest{CommonName: "sensor-2"})
	if _, err := WriteDeviceFiles(out, "sensor-2", is2, ca.CertificatePEM()); err != nil {
		t.Errorf("second device beside the first: %v", err)
	}
	other := newCA(t, t.TempDir(), nil)
	if _, err := WriteDeviceFiles(out, "sensor-3", is2, other.CertificatePEM()); err == nil {
		t.Error("replaced ca.pem with another CA")
	}
	if _, err := os.Stat(filepath.Join(out, "sensor-3.key")); err == nil {
		t.Error("wrote a key although the call failed")
	}
	if _, err := WriteDeviceFiles(out, "../x", is2, ca.CertificatePEM()); !errors.Is(err, ErrInvalid) {
		t.Errorf("name with a slash: %v", err)
	}
}

// The server certificate serves a real TLS handshake for each of its
// names with a client certificate the CA issued, and is kept while it
// serves.
func TestServerCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, dir, nil)
	srv, err := ca.ServerCertificate(ServerOptions{Names: []string{"iot.example.com", "10.1.2.3"}})
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(t, filepath.Join(dir, ServerKeyFile)); m != 0o600 {
		t.Errorf("server key mode %v", m)
	}
	dev, err := ca.Issue(IssueRequest{CommonName: "sensor-1"})
	if err != nil {
		t.Fatal(err)
	}
	clientCert, err := tls.X509KeyPair(dev.CertPEM, dev.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{srv}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Write([]byte{1})
			}()
		}
	}()
	for _, name := range []string{"localhost", "127.0.0.1", "iot.example.com", "10.1.2.3"} {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
			RootCAs: pool, ServerName: name, Certificates: []tls.Certificate{clientCert},
		})
		if err != nil {
			t.Errorf("handshake as %s: %v", name, err)
			continue
		}
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Errorf("read as %s: %v", name, err)
		}
		c.Close()
	}
	if _, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "other.example.com"}); err == nil {
		t.Error("handshake for a name the certificate does not hold")
	}

	same, err := ca.ServerCertificate(ServerOptions{Names: []string{"10.1.2.3"}})
	if err != nil {
		t.Fatal(err)
	}
	if string(same.Certificate[0]) != string(srv.Certificate[0]) {
		t.Error("issued again although the kept certificate holds every name")
	}
	more, err := ca.ServerCertificate(ServerOptions{Names: []string{"new.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(more.Certificate[0])
	if string(more.Certificate[0]) == string(srv.Certificate[0]) || leaf.VerifyHostname("new.example.com") != nil {
		t.Error("a new name did not give a new certificate holding it")
	}
}

func TestNormalizeID(t *testing.T) {
	id := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{id, id, true},
		{strings.ToUpper(id), id, true},
		{"0x" + id, id, true},
		{id[:63], "", false},
		{id + "0", "", false},
		{strings.Repeat("zz", 32), "", false},
		{"", "", false},
	} {
		got, ok := NormalizeID(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("NormalizeID(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// signed makes a certificate from tmpl signed by parent's key (or
// self-signed when parent is nil), with a new P-256 key.
func signed(t testing.TB, tmpl *x509.Certificate, parent *x509.Certificate, parentKey any) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber, _ = newSerial()
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func TestParsePEM(t *testing.T) {
	now := time.Now()
	ca := newCA(t, t.TempDir(), nil)
	dev, _ := ca.Issue(IssueRequest{CommonName: "d"})
	expired := newCA(t, t.TempDir(), func() time.Time { return now.Add(-48 * time.Hour) })
	old, _ := expired.Issue(IssueRequest{CommonName: "old", Validity: time.Hour})
	future := newCA(t, t.TempDir(), func() time.Time { return now.Add(48 * time.Hour) })
	early, _ := future.Issue(IssueRequest{CommonName: "early"})
	serverOnly, _ := signed(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "srv"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca.Certificate(), ca.key)
	noEKU, _ := signed(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "plain"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
	}, nil, nil)
	noSign, _ := signed(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "nosign"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
	}, nil, nil)
	two := append(append([]byte{}, dev.CertPEM...), ca.CertificatePEM()...)

	for _, tc := range []struct {
		name      string
		in        []byte
		device    string // "" = accepted, else part of the error
		authority string
	}{
		{"issued device", dev.CertPEM, "", "not a CA"},
		{"text around the block", append(append([]byte("subject=CN=d\n"), dev.CertPEM...), "trailer\n"...), "", "not a CA"},
		{"CA", ca.CertificatePEM(), "is a CA certificate", ""},
		{"empty", nil, "no PEM", "no PEM"},
		{"garbage", []byte("hello"), "no PEM", "no PEM"},
		{"private key", dev.KeyPEM, `"PRIVATE KEY"`, `"PRIVATE KEY"`},
		{"corrupt DER", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "PEM block 1", "PEM block 1"},
		{"two certificates", two, "2 certificates", "2 certificates"},
		{"expired", old.CertPEM, "expired", "not a CA"},
		{"not yet valid", early.CertPEM, "not valid before", "not a CA"},
		{"server-only key usage", EncodePEM(serverOnly.Raw), "not for client authentication", "not a CA"},
		{"no key usage", EncodePEM(noEKU.Raw), "", "not a CA"},
		{"CA that may not sign", EncodePEM(noSign.Raw), "is a CA certificate", "may not sign"},
		{"too large", make([]byte, MaxPEMSize+1), "at most", "at most"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := func(what string, err error, want string) {
				t.Helper()
				switch {
				case want == "" && err != nil:
					t.Errorf("%s: refused: %v", what, err)
				case want != "" && err == nil:
					t.Errorf("%s: accepted, want an error with %q", what, want)
				case want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want)):
					t.Errorf("%s: error %v, want ErrInvalid with %q", what, err, want)
				}
			}
			_, err := ParseDevicePEM(tc.in, now)
			check("device", err, tc.device)
			_, err = ParseCAPEM(tc.in, now)
			check("CA", err, tc.authority)
		})
	}
}

// VerifyChain accepts a device under a registered root, and one under an
// intermediate the device presents or that is itself the registered
// CA; it refuses other CAs, expired devices and server-only ones.
func TestVerifyChain(t *testing.T) {
	now := time.Now()
	// A root without a path length limit (iotpipe's own CA has 0).
	rootCert, rootKey := signed(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "root"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	root := &CA{cert: rootCert, key: rootKey, opts: CAOptions{Now: time.Now}}
	inter, interKey := signed(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "intermediate"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, root.Certificate(), root.key)
	leaf, _ := signed(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "dev"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, inter, interKey)
	direct, err := root.Issue(IssueRequest{CommonName: "direct"})
	if err != nil {
		t.Fatal(err)
	}
	own := newCA(t, t.TempDir(), nil)
	underOwn, _ := signed(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "sub"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, own.Certificate(), own.key)
	if err := VerifyChain(leaf, []*x509.Certificate{underOwn}, own.Certificate(), now); err == nil {
		t.Error("an intermediate under iotpipe's CA (path length 0): accepted")
	}
	other := newCA(t, t.TempDir(), nil)

	if err := VerifyChain(direct.Certificate, nil, root.Certificate(), now); err != nil {
		t.Errorf("direct: %v", err)
	}
	if err := VerifyChain(leaf, []*x509.Certificate{inter}, root.Certificate(), now); err != nil {
		t.Errorf("through a presented intermediate: %v", err)
	}
	if err := VerifyChain(leaf, nil, inter, now); err != nil {
		t.Errorf("registered intermediate: %v", err)
	}
	if err := VerifyChain(leaf, nil, root.Certificate(), now); err == nil {
		t.Error("intermediate missing: accepted")
	}
	if err := VerifyChain(direct.Certificate, nil, other.Certificate(), now); !errors.Is(err, ErrInvalid) {
		t.Errorf("other CA: %v", err)
	}
	if err := VerifyChain(direct.Certificate, nil, root.Certificate(), now.Add(3*24*time.Hour)); err == nil {
		t.Error("expired device: accepted")
	}
	if iss := IssuerOf(direct.Certificate); string(iss.RawSubject) != string(root.Certificate().RawSubject) ||
		string(iss.KeyID) != string(root.Certificate().SubjectKeyId) {
		t.Errorf("IssuerOf = %+v", iss)
	}
}

func FuzzParsePEM(f *testing.F) {
	ca := newCA(f, f.TempDir(), nil)
	dev, _ := ca.Issue(IssueRequest{CommonName: "d"})
	f.Add(dev.CertPEM)
	f.Add(ca.CertificatePEM())
	f.Add(dev.KeyPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	now := time.Now()
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParsePEM(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error not ErrInvalid: %v", err)
		}
		if c, err := ParseDevicePEM(data, now); err == nil && c.IsCA {
			t.Fatal("a CA accepted as a device")
		}
		if c, err := ParseCAPEM(data, now); err == nil && !c.IsCA {
			t.Fatal("a non-CA accepted as a CA")
		}
	})
}

// ClientTLS trusts the CA file, presents the client certificate when
// given, and says what is wrong otherwise.
func TestClientTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, t.TempDir(), nil)
	is, err := ca.Issue(IssueRequest{CommonName: "dev-1"})
	if err != nil {
		t.Fatal(err)
	}
	files, err := WriteDeviceFiles(dir, "dev-1", is, ca.CertificatePEM())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ClientTLS(files.CA, files.Cert, files.Key)
	if err != nil || c.RootCAs == nil || len(c.Certificates) != 1 || c.MinVersion != tls.VersionTLS12 {
		t.Fatalf("ClientTLS: %+v %v", c, err)
	}
	if c, err := ClientTLS(files.CA, "", ""); err != nil || len(c.Certificates) != 0 {
		t.Fatalf("CA only: %+v %v", c, err)
	}
	for _, bad := range [][3]string{
		{filepath.Join(dir, "missing.pem"), "", ""},
		{files.Key, "", ""},
		{files.CA, files.Cert, ""},
		{files.CA, files.Cert, files.CA},
	} {
		if _, err := ClientTLS(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("ClientTLS(%q): no error", bad)
		}
	}
}
