package registry_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/internal/eventlog"
)

// A node runs the registry beside the MQTT front: the operator's
// commands write to it, the front reads it at every TLS connect,
// registers unknown certificates of registered CAs just in time, and
// ends the sessions a change revokes.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lg, err := eventlog.Open(ctx, eventlog.Options{DataDir: "data/kafka"})
	if err != nil {
		log.Fatal(err)
	}
	defer lg.Close()
	reg, err := registry.New(lg, registry.Options{Dir: "data/registry"})
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()
	go reg.Run(ctx)
	if err := reg.WaitReady(ctx); err != nil {
		log.Fatal(err)
	}

	// iotpipe things create sensor-1; iotpipe certs create --thing sensor-1 --out certs
	ca, err := pki.LoadOrCreateCA("data/pki", pki.CAOptions{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := reg.CreateThing(ctx, registry.Thing{Name: "sensor-1"}); err != nil {
		log.Fatal(err)
	}
	cert, issued, err := reg.CreateCertificate(ctx, ca, registry.CreateOptions{Thing: "sensor-1"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := pki.WriteDeviceFiles("certs", "sensor-1", issued, ca.CertificatePEM()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("certificate", cert.ID, cert.Status)

	// The front: a client certificate is accepted when registered and
	// ACTIVE, or registered just in time under a registered CA.
	serverCert, err := ca.ServerCertificate(pki.ServerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	_ = &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAnyClientCert,
		MinVersion:   tls.VersionTLS12,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			chain := make([]*x509.Certificate, 0, len(raw))
			for _, der := range raw {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return err
				}
				chain = append(chain, c)
			}
			if err := pki.CheckClient(chain[0], time.Now()); err != nil {
				return err
			}
			c, err := reg.Certificate(pki.ID(chain[0].Raw))
			if errors.Is(err, registry.ErrNotFound) {
				res, jerr := reg.RegisterJIT(ctx, chain)
				if jerr != nil {
					return jerr
				}
				// publish res.Event.Payload() on res.Topic when res.Registered
				c = res.Certificate
			} else if err != nil {
				return err
			}
			if c.Status != registry.StatusActive {
				return fmt.Errorf("certificate %s is %s", c.ID, c.Status)
			}
			return nil
		},
	}
	stop := reg.Watch(func(c registry.Change) {
		if end, ok := c.Ends(); ok {
			log.Printf("disconnect %+v", end) // hand to the front's goroutine
		}
	})
	defer stop()
}
