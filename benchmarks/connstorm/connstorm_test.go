// Package connstorm measures a connect storm on iotpipe's MQTT over TLS
// front: thousands of devices, each with its own registered certificate
// and a policy with ${iot:ClientId}, connecting at once (after an
// outage, a deployment, a power cut), policies compiled for each.
//
//	go test ./benchmarks/connstorm -run XXX -bench . -benchtime 1x [-devices 5000] [-inflight 256]
package connstorm

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/ingest"
	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/ingest/policy"
	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/internal/eventlog"
)

var (
	devices  = flag.Int("devices", 5000, "devices in the storm, each with its own certificate")
	inflight = flag.Int("inflight", 256, "connects in progress at once (the devices' dialing is spread by their own retries in the field)")
)

// stormPolicy is what each device may do: connect as itself, publish and
// subscribe under its own name.
const stormPolicy = `{"Version":"2012-10-17","Statement":[
{"Effect":"Allow","Action":"iot:Connect","Resource":"client/${iot:Connection.Thing.ThingName}"},
{"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"topic/dt/${iot:ClientId}/*"},
{"Effect":"Allow","Action":"iot:Subscribe","Resource":"topicfilter/cmd/${iot:ClientId}/*"}]}`

// BenchmarkConnectStorm registers -devices things with a certificate
// each (not timed), then connects them all over TLS at once, -inflight
// at a time, each kept open: it reports the storm's duration, connects/s
// and the connect latency's median and 99th percentile. b.N is ignored:
// run it with -benchtime 1x.
func BenchmarkConnectStorm(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lg, err := eventlog.Open(ctx, eventlog.Options{DataDir: b.TempDir(), Port: -1, Partitions: 8, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer lg.Close()
	reg, err := registry.New(lg, registry.Options{Dir: filepath.Join(b.TempDir(), "registry"), Logger: quiet,
		CheckPolicy: func(doc []byte) error { _, err := policy.Parse("check", doc); return err }})
	if err != nil {
		b.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- reg.Run(ctx) }()
	defer func() { cancel(); <-runDone; reg.Close() }()
	if err := reg.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(filepath.Join(b.TempDir(), "pki"), pki.CAOptions{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	serverCert, err := ca.ServerCertificate(pki.ServerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := reg.CreatePolicy(ctx, "storm", []byte(stormPolicy)); err != nil {
		b.Fatal(err)
	}

	// The fleet: things and certificates, registered 64 at a time.
	start := time.Now()
	certs := make([]tls.Certificate, *devices)
	var wg sync.WaitGroup
	var failed atomic.Value
	work := make(chan int)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				name := fmt.Sprintf("storm-%05d", i)
				if _, err := reg.CreateThing(ctx, registry.Thing{Name: name}); err != nil {
					failed.Store(err)
					continue
				}
				_, is, err := reg.CreateCertificate(ctx, ca, registry.CreateOptions{Thing: name, Policies: []string{"storm"}})
				if err != nil {
					failed.Store(err)
					continue
				}
				if certs[i], err = tls.X509KeyPair(is.CertPEM, is.KeyPEM); err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	for i := range *devices {
		work <- i
	}
	close(work)
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	b.Logf("registered %d devices in %v", *devices, time.Since(start).Round(time.Millisecond))

	prod, err := lg.Client(ingest.ProducerOpts()...)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	srv, err := ingest.New(prod, ingest.Options{TLSAddr: "127.0.0.1:0", TLSCertificate: &serverCert, Registry: reg,
		CA: ca.Certificate(), Logger: quiet, MaxConnections: -1, ConnectTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Certificate())
	addr := srv.TLSAddr().String()

	// The storm.
	latencies := make([]time.Duration, *devices)
	conns := make([]net.Conn, *devices)
	sem := make(chan struct{}, *inflight)
	b.ResetTimer()
	start = time.Now()
	for i := range *devices {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			c, err := connect(addr, fmt.Sprintf("storm-%05d", i), &tls.Config{Certificates: []tls.Certificate{certs[i]}, RootCAs: roots,
				ServerName: "localhost", CurvePreferences: []tls.CurveID{tls.X25519}})
			if err != nil {
				failed.Store(err)
				return
			}
			latencies[i], conns[i] = time.Since(t0), c
		}()
	}
	wg.Wait()
	took := time.Since(start)
	b.StopTimer()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	slices.Sort(latencies)
	b.ReportMetric(took.Seconds(), "storm-s")
	b.ReportMetric(float64(*devices)/took.Seconds(), "connects/s")
	b.ReportMetric(float64(latencies[len(latencies)/2].Milliseconds()), "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Milliseconds()), "p99-ms")
	b.Logf("%d devices connected over TLS in %v (%d at a time)", *devices, took.Round(time.Millisecond), *inflight)
}

// connect opens a TLS connection, sends an MQTT 3.1.1 CONNECT of id and
// waits for an accepting CONNACK.
func connect(addr, id string, conf *tls.Config) (net.Conn, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Minute}, "tcp", addr, conf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", id, err)
	}
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, byte(len(id) >> 8), byte(len(id))}, id...)
	if _, err := c.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", id, err)
	}
	c.SetReadDeadline(time.Now().Add(time.Minute))
	var ack [4]byte
	if _, err := io.ReadFull(bufio.NewReader(c), ack[:]); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		c.Close()
		return nil, fmt.Errorf("%s: CONNACK %x: %v", id, ack, err)
	}
	c.SetReadDeadline(time.Time{})
	return c, nil
}
