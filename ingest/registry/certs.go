package registry

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/iotpipe/iotpipe/ingest/pki"
)

// CheckTransition checks a certificate status change as AWS's
// UpdateCertificate does: the new status is ACTIVE, INACTIVE or REVOKED
// (PENDING_ACTIVATION and PENDING_TRANSFER are set by the registry
// only, REGISTER_INACTIVE is deprecated); a REVOKED certificate never
// changes again, nor does one PENDING_TRANSFER. Setting the status a
// certificate has is allowed (and changes nothing).
func CheckTransition(from, to CertificateStatus) error {
	switch to {
	case StatusActive, StatusInactive, StatusRevoked:
	case StatusPendingActivation, StatusPendingTransfer, StatusRegisterInactive:
		return fmt.Errorf("%w: status %s is set by the registry, not by a request", ErrInvalid, to)
	default:
		return fmt.Errorf("%w: status %q (ACTIVE, INACTIVE or REVOKED)", ErrInvalid, to)
	}
	if from == to {
		return nil
	}
	switch from {
	case StatusRevoked:
		return fmt.Errorf("a revoked certificate cannot become %s: %w", to, ErrCertificateState)
	case StatusPendingTransfer:
		return fmt.Errorf("a certificate pending transfer cannot become %s: %w", to, ErrCertificateState)
	}
	return nil
}

// RegisterOptions says how to register a certificate.
type RegisterOptions struct {
	// Status is the certificate's status: ACTIVE, INACTIVE or REVOKED
	// (default INACTIVE, as AWS's RegisterCertificate).
	Status CertificateStatus
	// Thing, when set, is attached to the certificate (it must exist).
	Thing string
	// Policies are attached to the certificate (they must exist).
	Policies []string
}

// RegisterCertificate registers a device certificate brought by the user
// (AWS's RegisterCertificate, or RegisterCertificateWithoutCA when no
// registered CA signed it): one PEM certificate, not a CA, valid now.
// Its CAID is the registered CA that signed it, if any. A certificate
// registered already is ErrAlreadyExists.
func (r *Registry) RegisterCertificate(ctx context.Context, certPEM []byte, o RegisterOptions) (*Certificate, error) {
	now := r.opts.Now()
	c, err := pki.ParseDevicePEM(certPEM, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if o.Status == "" {
		o.Status = StatusInactive
	}
	if err := CheckTransition(o.Status, o.Status); err != nil {
		return nil, err
	}
	return r.register(ctx, c, nil, o)
}

// CreateOptions says what certificate CreateCertificate issues.
type CreateOptions struct {
	// Thing is the thing the certificate is for: the subject's common
	// name, and attached to it. It must exist.
	Thing string
	// Validity is the certificate's lifetime (default
	// pki.DefaultDeviceValidity).
	Validity time.Duration
	// Status is the certificate's status (default ACTIVE).
	Status CertificateStatus
	// Policies are attached to the certificate (they must exist).
	Policies []string
}

// CreateCertificate issues a key and certificate for a thing with
// iotpipe's CA and registers the certificate, attached to the thing
// (AWS's CreateKeysAndCertificate and AttachThingPrincipal). The key is
// only in the returned pki.Issued: write it (pki.WriteDeviceFiles) or
// lose it.
func (r *Registry) CreateCertificate(ctx context.Context, ca *pki.CA, o CreateOptions) (*Certificate, *pki.Issued, error) {
	if err := CheckThingName(o.Thing); err != nil {
		return nil, nil, err
	}
	if o.Status == "" {
		o.Status = StatusActive
	}
	if err := CheckTransition(o.Status, o.Status); err != nil {
		return nil, nil, err
	}
	if _, err := r.Thing(o.Thing); err != nil {
		return nil, nil, fmt.Errorf("certificate for thing %s: %w (create the thing first)", o.Thing, err)
	}
	is, err := ca.Issue(pki.IssueRequest{CommonName: o.Thing, Validity: o.Validity})
	if err != nil {
		return nil, nil, err
	}
	c, err := r.register(ctx, is.Certificate, nil, RegisterOptions{Status: o.Status, Thing: o.Thing, Policies: o.Policies})
	if err != nil {
		return nil, nil, err
	}
	return c, is, nil
}

// register writes certificate c (with its CA when one of the registered
// CAs signed it, or ca when given), and its attachments.
func (r *Registry) register(ctx context.Context, c *x509.Certificate, ca *CACertificate, o RegisterOptions) (*Certificate, error) {
	if o.Thing != "" {
		if err := CheckThingName(o.Thing); err != nil {
			return nil, err
		}
	}
	for _, p := range o.Policies {
		if err := CheckPolicyName(p); err != nil {
			return nil, err
		}
	}
	caID := ""
	if ca != nil {
		caID = ca.ID
	} else if signer := r.signer(c, nil); signer != nil {
		caID = signer.ID
	}
	n := newCertificate(c, o.Status, caID)
	var out *Certificate
	err := r.do(ctx, func(tx *tx) error {
		if ok, err := tx.has(n.Key()); err != nil || ok {
			if ok {
				return fmt.Errorf("certificate %s: %w", n.ID, ErrAlreadyExists)
			}
			return err
		}
		if o.Thing != "" {
			if err := mustExist(tx, thingKey(o.Thing), "thing "+o.Thing); err != nil {
				return err
			}
		}
		for _, p := range o.Policies {
			if err := mustExist(tx, policyKey(p), "policy "+p); err != nil {
				return err
			}
		}
		c := *n
		if err := tx.put(&c, nil); err != nil {
			return err
		}
		// The certificate is this operation's own write: the
		// attachments need no check that their principal exists.
		if o.Thing != "" {
			if err := tx.put(&Attachment{Principal: c.ID, Thing: o.Thing}, nil); err != nil {
				return err
			}
		}
		for _, p := range o.Policies {
			if err := tx.put(&Attachment{Principal: c.ID, Policy: p}, nil); err != nil {
				return err
			}
		}
		out = &c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func newCertificate(c *x509.Certificate, status CertificateStatus, caID string) *Certificate {
	return &Certificate{
		ID:         pki.ID(c.Raw),
		Status:     status,
		PEM:        string(pki.EncodePEM(c.Raw)),
		CAID:       caID,
		CommonName: c.Subject.CommonName,
		Validity:   Validity{NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC()},
	}
}

// signer returns the registered CA (any status) that c chains to, with
// the intermediates the client presented, or nil.
func (r *Registry) signer(c *x509.Certificate, intermediates []*x509.Certificate) *CACertificate {
	now := r.opts.Now()
	for _, link := range append([]*x509.Certificate{c}, intermediates...) {
		cas, err := r.CAsFor(pki.IssuerOf(link))
		if err != nil {
			r.log.Warn("registry: CA lookup", "err", err)
			return nil
		}
		for _, ca := range cas {
			caCert, err := pki.ParsePEM([]byte(ca.PEM))
			if err != nil {
				continue
			}
			if pki.VerifyChain(c, intermediates, caCert[0], now) == nil {
				return ca
			}
		}
	}
	return nil
}

// SetCertificateStatus changes the status of the certificate id (AWS's
// UpdateCertificate; see CheckTransition). Live sessions of a
// certificate that stops being ACTIVE end (see Change.Ends).
func (r *Registry) SetCertificateStatus(ctx context.Context, id string, status CertificateStatus) (*Certificate, error) {
	n, err := checkCertID("certificate", id)
	if err != nil {
		return nil, err
	}
	if err := CheckTransition(status, status); err != nil {
		return nil, err
	}
	var out *Certificate
	err = r.do(ctx, func(tx *tx) error {
		old, err := txGet[Certificate](tx, certKey(n))
		if err != nil {
			return err
		}
		if err := CheckTransition(old.Status, status); err != nil {
			return fmt.Errorf("certificate %s: %w", n, err)
		}
		if old.Status == status {
			out = old
			return nil
		}
		c := *old
		c.Status = status
		out = &c
		return tx.put(&c, old)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ActivateCertificate sets the certificate's status to ACTIVE.
func (r *Registry) ActivateCertificate(ctx context.Context, id string) (*Certificate, error) {
	return r.SetCertificateStatus(ctx, id, StatusActive)
}

// DeactivateCertificate sets the certificate's status to INACTIVE.
func (r *Registry) DeactivateCertificate(ctx context.Context, id string) (*Certificate, error) {
	return r.SetCertificateStatus(ctx, id, StatusInactive)
}

// RevokeCertificate sets the certificate's status to REVOKED, for good.
func (r *Registry) RevokeCertificate(ctx context.Context, id string) (*Certificate, error) {
	return r.SetCertificateStatus(ctx, id, StatusRevoked)
}

// DeleteCertificate deletes the certificate id, as AWS's
// DeleteCertificate: an ACTIVE certificate is ErrCertificateState, one
// with a thing attached ErrDeleteConflict, and one with policies
// attached ErrDeleteConflict unless force (which detaches them).
func (r *Registry) DeleteCertificate(ctx context.Context, id string, force bool) error {
	n, err := checkCertID("certificate", id)
	if err != nil {
		return err
	}
	return r.do(ctx, func(tx *tx) error {
		old, err := txGet[Certificate](tx, certKey(n))
		if err != nil {
			return err
		}
		if old.Status == StatusActive {
			return fmt.Errorf("certificate %s is ACTIVE (deactivate it first): %w", n, ErrCertificateState)
		}
		things, err := suffixes(tx.b, entityKey(thingAttachPrefix(n)), "", 0)
		if err != nil {
			return err
		}
		if len(things) > 0 {
			return fmt.Errorf("certificate %s is attached to thing %s (detach it first): %w", n, things[0], ErrDeleteConflict)
		}
		policies, err := suffixes(tx.b, entityKey(policyAttachPrefix(n)), "", 0)
		if err != nil {
			return err
		}
		if len(policies) > 0 && !force {
			return fmt.Errorf("certificate %s has policy %s attached (detach it first, or force): %w", n, policies[0], ErrDeleteConflict)
		}
		for _, p := range policies {
			tx.del(policyAttachKey(n, p))
		}
		tx.del(certKey(n))
		return nil
	})
}
