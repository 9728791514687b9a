package mqttload

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/iotpipe/iotpipe/ingest/pki"
)

// startMochiTLS runs mochi with a TLS listener that requires a client
// certificate signed by a new CA; it returns the address and the files
// of a device certificate (with the CA's ca.pem).
func startMochiTLS(t *testing.T) (string, pki.DeviceFiles, *countHook) {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(filepath.Join(t.TempDir(), "pki"), pki.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.ServerCertificate(pki.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.Issue(pki.IssueRequest{CommonName: "loader"})
	if err != nil {
		t.Fatal(err)
	}
	files, err := pki.WriteDeviceFiles(t.TempDir(), "loader", is, ca.CertificatePEM())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	counter := new(countHook)
	for _, h := range []mqtt.Hook{new(auth.AllowHook), counter} {
		if err := srv.AddHook(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	addr := freeAddr(t)
	conf := &tls.Config{Certificates: []tls.Certificate{server}, ClientCAs: roots, ClientAuth: tls.RequireAndVerifyClientCert}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tls", Address: addr, TLSConfig: conf})); err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve() }()
	t.Cleanup(func() { _ = srv.Close() })
	waitListening(t, addr)
	return addr, files, counter
}

func TestRunTLSMochi(t *testing.T) {
	addr, files, counter := startMochiTLS(t)
	conf, err := tlsFiles{ca: files.CA, cert: files.Cert, key: files.Key}.config()
	if err != nil {
		t.Fatal(err)
	}
	const count = 3000
	res, err := Run(testCtx(t, 60*time.Second), Config{Addr: addr, Conns: 3, QoS: 1, Count: count, TLS: conf,
		Subscribe: "bench/#", SubscribeQoS: 1, Drain: 10 * time.Second})
	if err != nil {
		t.Fatalf("Run over TLS: %v", err)
	}
	if res.TotalAcked != count || res.TotalReceived != count || res.Errors != 0 {
		t.Errorf("acked %d received %d errors %d %v, want %d acknowledged and received", res.TotalAcked, res.TotalReceived, res.Errors, res.ErrorSamples, count)
	}
	if got := counter.n.Load(); got != count {
		t.Errorf("broker received %d PUBLISHes, want %d", got, count)
	}

	// Without a client certificate the broker ends the handshake.
	conf.Certificates = nil
	res, err = Run(testCtx(t, 60*time.Second), Config{Addr: addr, Conns: 1, QoS: 1, Count: 10, TLS: conf, ClientPrefix: "nocert-"})
	if err == nil && res.Errors == 0 {
		t.Errorf("a connection without a client certificate published: %+v", res)
	}
}

func TestCommandTLS(t *testing.T) {
	addr, files, _ := startMochiTLS(t)
	var stdout, stderr bytes.Buffer
	code := Command(context.Background(), []string{"--addr", addr, "--cafile", files.CA, "--cert", files.Cert, "--key", files.Key,
		"--conns", "2", "--count", "200", "--quiet"}, &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), "errors      0") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, stdout.String(), stderr.String())
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"cert without cafile", []string{"--cert", files.Cert, "--key", files.Key}, "need --cafile"},
		{"cert without key", []string{"--cafile", files.CA, "--cert", files.Cert}, "go together"},
		{"missing cafile", []string{"--cafile", filepath.Join(t.TempDir(), "none.pem")}, "CA certificate: open"},
		{"cafile without a certificate", []string{"--cafile", files.Key}, "no PEM certificate"},
		{"key of another file", []string{"--cafile", files.CA, "--cert", files.Cert, "--key", files.CA}, "client certificate: tls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"--addr", addr, "--count", "1"}, tt.args...)
			if code := Command(context.Background(), args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tt.want)
			}
		})
	}
}
