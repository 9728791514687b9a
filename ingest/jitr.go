package ingest

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/schemas"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/twmb/franz-go/pkg/kgo"
)

// registerJIT registers just in time a client certificate the registry
// does not hold (registry.RegisterJIT: under the registered CA that
// signed it, when that CA is ACTIVE and auto-registers; the thing of
// its common name created and attached, the CA's policies attached).
// When this call registered it, AWS's registration event is written to
// the log and routed ($aws/events/certificates/registered/
// <caCertificateId>), before the certificate's status is checked, so a
// PENDING_ACTIVATION certificate is announced and then refused, as AWS
// does. It returns the certificate, or why the connection is refused.
func (a *auth) registerJIT(cl *mqtt.Client, chain []*x509.Certificate) (*registry.Certificate, *authRefusal) {
	certID := pki.ID(chain[0].Raw)
	ctx, cancel := context.WithTimeout(a.s.ctx, a.s.opts.AckTimeout)
	defer cancel()
	res, err := a.reg.RegisterJIT(ctx, chain)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		if ca := a.s.opts.CA; ca != nil && pki.VerifyChain(chain[0], chain[1:], ca, time.Now()) == nil {
			return nil, refuse(refusedUnknownCert, "certificate %s (CN %q) was issued by iotpipe's CA but is not registered (issue one with iotpipe certs create, or register it)",
				certID, chain[0].Subject.CommonName)
		}
		return nil, refuse(refusedUntrustedCA, "certificate %s (CN %q, issuer %q) is not registered and no registered CA signed it",
			certID, chain[0].Subject.CommonName, chain[0].Issuer.String())
	case errors.Is(err, registry.ErrCertificateState):
		return nil, refuse(refusedUnknownCert, "certificate %s is not registered and is not registered just in time: %v", certID, err)
	case errors.Is(err, registry.ErrInvalid):
		return nil, refuse(refusedInvalidCert, "certificate %s: %v", certID, err)
	case err != nil:
		return nil, refuse(refusedRegistryError, "just-in-time registration of certificate %s: %v", certID, err)
	}
	if res.Registered && res.Event != nil {
		a.announceRegistered(cl, res)
	}
	return res.Certificate, nil
}

// announceRegistered writes the registration event of res to the log
// (the device's client id and thing, the certificate as principal) and
// routes it to MQTT subscribers. The registration is in the registry
// whatever happens to the event: a log failure is logged.
func (a *auth) announceRegistered(cl *mqtt.Client, res *registry.JITResult) {
	s := a.s
	payload := res.Event.Payload()
	rec := new(kgo.Record)
	s.fillRecord(rec, make([]kgo.RecordHeader, 0, 9), []byte(schemas.EventKey(cl.ID, res.Thing, res.Topic)), cl.ID, res.Certificate.ID, res.Thing,
		schemas.EventPublish, res.Topic, 1, false, payload, time.Now())
	ctx, cancel := context.WithTimeout(s.ctx, s.opts.AckTimeout)
	defer cancel()
	if err := s.producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
		s.opts.Logger.Error("certificate registered just in time, but its registration event could not be logged",
			"certificate", res.Certificate.ID, "topic", res.Topic, "err", err)
		return
	}
	s.metrics.lifecycle.WithLabelValues("certificate_registered").Inc()
	s.route(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: res.Topic, Payload: payload}, "")
	s.opts.Logger.Info("certificate registered just in time", "certificate", res.Certificate.ID, "ca", res.CA.ID,
		"status", res.Certificate.Status, "thing", res.Thing, "policies", res.Policies, "client", cl.ID)
}
