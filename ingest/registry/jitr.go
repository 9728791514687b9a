package registry

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/iotpipe/iotpipe/ingest/pki"
)

// RegisteredTopicPrefix starts the topic of a JIT registration event:
// the CA certificate's id follows.
const RegisteredTopicPrefix = "$aws/events/certificates/registered/"

// JITResult is what RegisterJIT did.
type JITResult struct {
	// Certificate is the device certificate, registered by this call or
	// before it.
	Certificate *Certificate
	// CA is the registered CA it chains to (nil for a certificate that
	// was registered before without a CA).
	CA *CACertificate
	// Registered is true when this call registered it: the front then
	// publishes Event on Topic.
	Registered bool
	// Thing is the thing attached by this call ("" when none: the
	// subject's common name is not a valid thing name).
	Thing string
	// Policies are the CA's policies this call attached (those that
	// exist).
	Policies []string
	// Topic is $aws/events/certificates/registered/<caCertificateId>.
	Topic string
	// Event is the registration event (when Registered).
	Event *RegisteredEvent
}

// RegisteredEvent is the payload AWS IoT publishes when it registers a
// certificate just in time.
type RegisteredEvent struct {
	// CertificateID is the registered certificate's id.
	CertificateID string `json:"certificateId"`
	// CACertificateID is the id of the CA it chains to.
	CACertificateID string `json:"caCertificateId"`
	// Timestamp is when the event was made (Unix milliseconds).
	Timestamp int64 `json:"timestamp"`
	// CertificateStatus is PENDING_ACTIVATION, or ACTIVE under a CA
	// that auto-activates.
	CertificateStatus CertificateStatus `json:"certificateStatus"`
	// AWSAccountID is Options.AccountID.
	AWSAccountID string `json:"awsAccountId"`
	// CertificateRegistrationTimestamp is when it was registered (Unix
	// milliseconds).
	CertificateRegistrationTimestamp int64 `json:"certificateRegistrationTimestamp"`
}

// Payload returns the event as JSON.
func (e *RegisteredEvent) Payload() []byte {
	b, _ := json.Marshal(e)
	return b
}

// RegisterJIT registers, just in time, the certificate a client
// presented at a TLS connect (chain[0]; the rest is what else the client
// presented) when it is not registered and chains to a registered CA
// that is ACTIVE with auto-registration enabled: the certificate becomes
// PENDING_ACTIVATION (ACTIVE with the CA's AutoActivate), the thing
// named by the subject's common name is created when missing and
// attached, and the CA's policies are attached, all in one transaction.
// A certificate registered already (by an earlier or a concurrent call,
// on any node) is returned with Registered false, so concurrent first
// connects register it once. Only an ACTIVE certificate may connect:
// the front refuses a PENDING_ACTIVATION one after publishing the event,
// as AWS does. Errors: ErrInvalid (expired, not for client
// authentication, not chaining), ErrNotFound (no registered CA signed
// it), ErrCertificateState (the CA is inactive or does not
// auto-register).
func (r *Registry) RegisterJIT(ctx context.Context, chain []*x509.Certificate) (*JITResult, error) {
	if len(chain) == 0 {
		return nil, fmt.Errorf("%w: no client certificate", ErrInvalid)
	}
	leaf := chain[0]
	id := pki.ID(leaf.Raw)
	if c, err := r.Certificate(id); err == nil {
		return r.existing(c), nil
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	now := r.opts.Now()
	if err := pki.CheckClient(leaf, now); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	signer := r.signer(leaf, chain[1:])
	if signer == nil {
		return nil, fmt.Errorf("certificate %s (CN %q): no registered CA signed it: %w", id, leaf.Subject.CommonName, ErrNotFound)
	}
	n := newCertificate(leaf, StatusPendingActivation, signer.ID)
	var res *JITResult
	var skipped []string
	err := r.do(ctx, func(tx *tx) error {
		res, skipped = nil, nil
		if c, err := txGet[Certificate](tx, certKey(id)); err == nil {
			res = r.existing(c)
			return nil
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		ca, err := txGet[CACertificate](tx, caKey(signer.ID))
		if err != nil {
			return err
		}
		if ca.Status != CAActive {
			return fmt.Errorf("CA certificate %s is %s: %w", ca.ID, ca.Status, ErrCertificateState)
		}
		if ca.AutoRegistration != AutoRegistrationEnable {
			return fmt.Errorf("CA certificate %s does not register certificates on first connect (auto-registration %s): %w", ca.ID, ca.AutoRegistration, ErrCertificateState)
		}
		c := *n
		if ca.AutoActivate {
			c.Status = StatusActive
		}
		if err := tx.put(&c, nil); err != nil {
			return err
		}
		res = &JITResult{Certificate: &c, CA: ca, Registered: true, Topic: RegisteredTopicPrefix + ca.ID}
		if thing := leaf.Subject.CommonName; CheckThingName(thing) == nil {
			ok, err := tx.has(thingKey(thing))
			if err != nil {
				return err
			}
			if !ok {
				if err := tx.put(&Thing{Name: thing, ID: uuid.NewString()}, nil); err != nil {
					return err
				}
			}
			if err := tx.put(&Attachment{Principal: c.ID, Thing: thing}, nil); err != nil {
				return err
			}
			res.Thing = thing
		}
		for _, p := range ca.Policies {
			ok, err := tx.has(policyKey(p))
			if err != nil {
				return err
			}
			if !ok {
				skipped = append(skipped, p)
				continue
			}
			if err := tx.put(&Attachment{Principal: c.ID, Policy: p}, nil); err != nil {
				return err
			}
			res.Policies = append(res.Policies, p)
		}
		ms := tx.now.UnixMilli()
		res.Event = &RegisteredEvent{
			CertificateID: c.ID, CACertificateID: ca.ID, Timestamp: ms, CertificateStatus: c.Status,
			AWSAccountID: r.opts.AccountID, CertificateRegistrationTimestamp: ms,
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res.Registered {
		r.metrics.jit.Inc()
		r.log.Info("registry: certificate registered just in time", "certificate", id, "ca", res.CA.ID,
			"status", res.Certificate.Status, "thing", res.Thing, "policies", res.Policies)
		if len(skipped) > 0 {
			r.log.Warn("registry: the CA's policies do not exist; not attached", "ca", res.CA.ID, "policies", skipped)
		}
	}
	return res, nil
}

// existing is the JITResult of a certificate registered before.
func (r *Registry) existing(c *Certificate) *JITResult {
	res := &JITResult{Certificate: c}
	if c.CAID != "" {
		if ca, err := r.CA(c.CAID); err == nil {
			res.CA = ca
			res.Topic = RegisteredTopicPrefix + ca.ID
		}
	}
	return res
}
