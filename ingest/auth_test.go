package ingest

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/ingest/policy"
	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// idRig is an ingest server without --dev over a real embedded log and
// registry, with iotpipe's CA and its server certificate: a TLS
// listener, and a plain one for tokens.
type idRig struct {
	*rig
	reg    *registry.Registry
	ca     *pki.CA
	caDir  string
	roots  *x509.CertPool
	logs   *syncBuffer
	offset atomic.Int64 // the registry's clock is time.Now plus this
	tls    string       // the TLS listener's address
}

const allowAllPolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:*","Resource":"*"}]}`

// newIDRig starts the log, the registry (ready) and a server with opts
// (Dev off; TLSAddr and MQTTAddr on free ports unless set).
func newIDRig(t testing.TB, opts Options) *idRig {
	t.Helper()
	r := &idRig{logs: new(syncBuffer), caDir: filepath.Join(t.TempDir(), "pki")}
	l, err := eventlog.Open(context.Background(), eventlog.Options{DataDir: t.TempDir(), Port: -1, Partitions: 4, Logger: logtest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	reg := runRegistry(t, l, registry.Options{
		Dir:         filepath.Join(t.TempDir(), "registry"),
		CheckPolicy: func(doc []byte) error { _, err := policy.Parse("check", doc); return err },
		Now:         func() time.Time { return time.Now().Add(time.Duration(r.offset.Load())) },
		Logger:      logtest.Quiet(),
	})
	r.reg = reg
	r.ca, err = pki.LoadOrCreateCA(r.caDir, pki.CAOptions{Logger: logtest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	r.roots = x509.NewCertPool()
	r.roots.AddCert(r.ca.Certificate())
	sc, err := r.ca.ServerCertificate(pki.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	prod, err := l.Client(ProducerOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	if opts.TLSAddr == "" {
		opts.TLSAddr = "127.0.0.1:0"
	}
	if opts.MQTTAddr == "" {
		opts.MQTTAddr = "127.0.0.1:0"
	}
	opts.TLSCertificate, opts.Registry, opts.CA = &sc, reg, r.ca.Certificate()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	srv := serve(t, prod, opts)
	r.rig = &rig{log: l, prod: prod, srv: srv, addr: srv.MQTTAddr().String()}
	r.tls = srv.TLSAddr().String()
	return r
}

// runRegistry runs a registry on l until the test ends, and waits
// until it is ready.
func runRegistry(t testing.TB, l *eventlog.Log, opts registry.Options) *registry.Registry {
	t.Helper()
	reg, err := registry.New(l, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		reg.Close()
	})
	wctx, wcancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer wcancel()
	if err := reg.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	return reg
}

// ctx bounds one registry call (generous: the machine is busy).
func (r *idRig) ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// policy creates the policy name with doc.
func (r *idRig) policy(t testing.TB, name, doc string) {
	t.Helper()
	if _, err := r.reg.CreatePolicy(r.ctx(t), name, []byte(doc)); err != nil {
		t.Fatal(err)
	}
}

// device creates thing and an ACTIVE certificate for it from iotpipe's
// CA with policies attached, and returns the certificate's id and the
// client's TLS certificate.
func (r *idRig) device(t testing.TB, thing string, o registry.CreateOptions) (string, tls.Certificate) {
	t.Helper()
	if _, err := r.reg.CreateThing(r.ctx(t), registry.Thing{Name: thing}); err != nil {
		t.Fatal(err)
	}
	o.Thing = thing
	c, is, err := r.reg.CreateCertificate(r.ctx(t), r.ca, o)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID, keyPair(t, is)
}

func keyPair(t testing.TB, is *pki.Issued) tls.Certificate {
	t.Helper()
	kp, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// clientTLS is a device's TLS configuration: iotpipe's CA as root, and
// cert when it has one.
func (r *idRig) clientTLS(cert *tls.Certificate) *tls.Config {
	c := &tls.Config{RootCAs: r.roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

// pahoTLS connects id over TLS with cert (MQTT 3.1.1) and fails the test
// if it is refused.
func (r *idRig) pahoTLS(t testing.TB, id string, cert tls.Certificate) paho.Client {
	t.Helper()
	c, err := r.pahoTLSErr(id, cert)
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func (r *idRig) pahoTLSErr(id string, cert tls.Certificate) (paho.Client, error) {
	o := paho.NewClientOptions().AddBroker("ssl://" + r.tls).SetClientID(id).SetAutoReconnect(false).
		SetCleanSession(true).SetTLSConfig(r.clientTLS(&cert)).SetConnectTimeout(20 * time.Second)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(30 * time.Second) {
		return nil, fmt.Errorf("connect %s: no answer", id)
	}
	return c, tok.Error()
}

// dialConnect connects over c (TLS or not) with a raw CONNECT of id,
// with user and pass when user is not empty, and returns the client and
// the CONNACK's code.
func dialConnect(t testing.TB, c net.Conn, id string, v5 bool, user, pass string) (*rawClient, byte) {
	t.Helper()
	tt, _ := t.(*testing.T)
	rc := &rawClient{t: tt, c: c, r: bufio.NewReader(c), v5: v5}
	if _, err := c.Write(rc.packet(0x10, connectBody(id, v5, "", nil, user, pass))); err != nil {
		t.Fatalf("CONNECT %s: %v", id, err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	typ, ack := rc.readNoDeadline()
	if typ != 0x20 || len(ack) < 2 {
		t.Fatalf("CONNECT %s: no CONNACK (0x%x %v)", id, typ, ack)
	}
	return rc, ack[1]
}

// dialTLS opens a TLS connection to the TLS listener with cert (nil: no
// client certificate).
func (r *idRig) dialTLS(t testing.TB, cert *tls.Certificate) net.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", r.tls, r.clientTLS(cert))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// events reads the events topic until cond holds of the records read
// (60s at most) and returns them.
func (r *idRig) events(t testing.TB, cond func([]*kgo.Record) bool) []*kgo.Record {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var out []*kgo.Record
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := eventlog.ReadToEnd(ctx, r.log.Client, r.log.Topics().Events, func(rec *kgo.Record) error {
			out = append(out, rec)
			return nil
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if cond(out) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("events: condition not met within 60s (%d records)", len(out))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// find returns the first record of recs on topic whose payload contains
// part, nil when none.
func find(recs []*kgo.Record, topic, part string) *kgo.Record {
	for _, rec := range recs {
		if string(schemas.HeaderValue(rec.Headers, schemas.HeaderTopic)) == topic && strings.Contains(string(rec.Value), part) {
			return rec
		}
	}
	return nil
}

// TestCertificateConnects: a registered, ACTIVE certificate connects over
// TLS and publishes; its records carry the certificate id as principal
// and the attached thing in iot.thing, and are keyed by the thing even
// under another client id.
func TestCertificateConnects(t *testing.T) {
	r := newIDRig(t, Options{})
	r.policy(t, "all", allowAllPolicy)
	certID, cert := r.device(t, "lamp-1", registry.CreateOptions{Policies: []string{"all"}})
	for _, id := range []string{"lamp-1", "lamp-1-app"} {
		c := r.pahoTLS(t, id, cert)
		if tok := c.Publish("dt/lamp/"+id, 1, false, `{"on":true,"via":"`+id+`"}`); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("publish as %s: %v", id, tok.Error())
		}
		c.Disconnect(100)
	}
	recs := r.events(t, func(recs []*kgo.Record) bool {
		return find(recs, "dt/lamp/lamp-1", "lamp-1") != nil && find(recs, "dt/lamp/lamp-1-app", "lamp-1-app") != nil
	})
	for _, id := range []string{"lamp-1", "lamp-1-app"} {
		rec := find(recs, "dt/lamp/"+id, id)
		env, err := schemas.DecodeEnvelope(rec.Headers)
		if err != nil {
			t.Fatal(err)
		}
		if env.Principal != certID || env.Thing != "lamp-1" || string(rec.Key) != "lamp-1" || env.ClientID != id {
			t.Errorf("client %s: envelope %+v key %q, want principal %s, thing and key lamp-1", id, env, rec.Key, certID)
		}
	}
	if got := counterValue(r.srv.metrics.authenticated.WithLabelValues(methodCertificate)); got != 2 {
		t.Errorf("authenticated{certificate} = %v, want 2", got)
	}
}

// TestMosquittoWithCertificate: mosquitto_pub with --cert, --key and
// --cafile publishes to iotpipe as it would to AWS IoT.
func TestMosquittoWithCertificate(t *testing.T) {
	r := newIDRig(t, Options{})
	r.policy(t, "all", allowAllPolicy)
	_, is := r.deviceFiles(t, "sensor-7")
	_, port, _ := net.SplitHostPort(r.tls)
	out, err := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-i", "sensor-7", "-q", "1",
		"--cafile", is.CA, "--cert", is.Cert, "--key", is.Key, "-t", "dt/sensor-7", "-m", `{"t":21.5}`).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
	recs := r.events(t, func(recs []*kgo.Record) bool { return find(recs, "dt/sensor-7", "21.5") != nil })
	if rec := find(recs, "dt/sensor-7", "21.5"); string(rec.Key) != "sensor-7" {
		t.Errorf("key %q", rec.Key)
	}
}

// deviceFiles is device with the key, certificate and CA written to
// files, as `iotpipe certs create --out` does.
func (r *idRig) deviceFiles(t testing.TB, thing string) (string, pki.DeviceFiles) {
	t.Helper()
	if _, err := r.reg.CreateThing(r.ctx(t), registry.Thing{Name: thing}); err != nil {
		t.Fatal(err)
	}
	c, is, err := r.reg.CreateCertificate(r.ctx(t), r.ca, registry.CreateOptions{Thing: thing, Policies: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	files, err := pki.WriteDeviceFiles(t.TempDir(), thing, is, r.ca.CertificatePEM())
	if err != nil {
		t.Fatal(err)
	}
	return c.ID, files
}

// TestCertificatesRefused: unknown, other-CA, expired, inactive and
// revoked certificates, and no credentials at all, are refused at
// CONNECT with MQTT 5's and 3.1.1's codes, a log line naming the reason
// and a counter; the connection is closed.
func TestCertificatesRefused(t *testing.T) {
	r := newIDRig(t, Options{})
	r.policy(t, "all", allowAllPolicy)
	ctx := r.ctx(t)
	issue := func(ca *pki.CA, cn string, validity time.Duration) tls.Certificate {
		is, err := ca.Issue(pki.IssueRequest{CommonName: cn, Validity: validity})
		if err != nil {
			t.Fatal(err)
		}
		return keyPair(t, is)
	}
	// Unknown: iotpipe's CA issued it, nobody registered it.
	unknown := issue(r.ca, "ghost", 0)
	// Other CA: a CA iotpipe does not know.
	other, err := pki.LoadOrCreateCA(t.TempDir(), pki.CAOptions{CommonName: "elsewhere", Logger: logtest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	stranger := issue(other, "stranger", 0)
	// Expired: registered two days ago (the registry's clock), valid for
	// an hour then.
	past, err := pki.LoadOrCreateCA(r.caDir, pki.CAOptions{Now: func() time.Time { return time.Now().Add(-48 * time.Hour) }, Logger: logtest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	oldIs, err := past.Issue(pki.IssueRequest{CommonName: "old", Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r.offset.Store(int64(-47*time.Hour - 30*time.Minute))
	if _, err := r.reg.RegisterCertificate(ctx, oldIs.CertPEM, registry.RegisterOptions{Status: registry.StatusActive, Policies: []string{"all"}}); err != nil {
		t.Fatal(err)
	}
	r.offset.Store(0)
	expired := keyPair(t, oldIs)
	_, inactive := r.device(t, "dormant", registry.CreateOptions{Status: registry.StatusInactive, Policies: []string{"all"}})
	revokedID, revoked := r.device(t, "stolen", registry.CreateOptions{Policies: []string{"all"}})
	if _, err := r.reg.RevokeCertificate(ctx, revokedID); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		cert   *tls.Certificate
		reason string
		v5, v3 byte
	}{
		{"unknown", &unknown, "unknown_certificate", 0x86, 0x04},
		{"other CA", &stranger, "untrusted_ca", 0x86, 0x04},
		{"expired", &expired, "expired", 0x86, 0x04},
		{"inactive", &inactive, "inactive", 0x87, 0x05},
		{"revoked", &revoked, "revoked", 0x87, 0x05},
		{"no credentials", nil, "no_credentials", 0x86, 0x04},
	}
	for _, tt := range tests {
		for _, v5 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/v5=%v", tt.name, v5), func(t *testing.T) {
				before := counterValue(r.srv.metrics.authRefused.WithLabelValues(tt.reason))
				rc, code := dialConnect(t, r.dialTLS(t, tt.cert), "refused-device", v5, "", "")
				want := tt.v3
				if v5 {
					want = tt.v5
				}
				if code != want {
					t.Fatalf("CONNACK 0x%02x, want 0x%02x", code, want)
				}
				if typ, body := rc.read(); typ != closed {
					t.Fatalf("after the refusal: 0x%x %v", typ, body)
				}
				if got := counterValue(r.srv.metrics.authRefused.WithLabelValues(tt.reason)) - before; got != 1 {
					t.Errorf("auth_refused{%s} went up by %v", tt.reason, got)
				}
			})
		}
		if !strings.Contains(r.logs.String(), "reason="+tt.reason) {
			t.Errorf("no log line names %s:\n%s", tt.reason, r.logs.String())
		}
	}
	// A refused connection leaves nothing in the log: no lifecycle event.
	for _, rec := range r.events(t, func([]*kgo.Record) bool { return true }) {
		if c := string(schemas.HeaderValue(rec.Headers, schemas.HeaderClientID)); c == "refused-device" {
			t.Errorf("event of a refused client: %s", schemas.HeaderValue(rec.Headers, schemas.HeaderTopic))
		}
	}
}
