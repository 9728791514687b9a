package registry

import (
	"context"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/iotpipe/iotpipe/ingest/pki"
)

// CAOptions says how to register a CA certificate (AWS's
// RegisterCACertificate). The CLI's `ca register` sets Active and
// AutoRegistration.
type CAOptions struct {
	// Active registers it ACTIVE (AWS's setAsActive); otherwise
	// INACTIVE.
	Active bool
	// AutoRegistration registers the certificates it signed on their
	// first connect (AWS's allowAutoRegistration).
	AutoRegistration bool
	// AutoActivate registers them ACTIVE, not PENDING_ACTIVATION.
	AutoActivate bool
	// Policies are attached to each certificate registered under it
	// (they must exist now; one deleted later is skipped).
	Policies []string
}

// RegisterCA registers a CA certificate (one PEM certificate with the CA
// basic constraint, valid now) for just-in-time registration. A CA
// registered already is ErrAlreadyExists. No proof of possession of its
// key is asked for (AWS's verification certificate): the operator is
// trusted.
func (r *Registry) RegisterCA(ctx context.Context, caPEM []byte, o CAOptions) (*CACertificate, error) {
	c, err := pki.ParseCAPEM(caPEM, r.opts.Now())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	for _, p := range o.Policies {
		if err := CheckPolicyName(p); err != nil {
			return nil, err
		}
	}
	n := &CACertificate{
		ID:               pki.ID(c.Raw),
		Status:           CAInactive,
		PEM:              string(pki.EncodePEM(c.Raw)),
		AutoRegistration: AutoRegistrationDisable,
		AutoActivate:     o.AutoActivate,
		Policies:         slices.Clone(o.Policies),
		CommonName:       c.Subject.CommonName,
		Validity:         Validity{NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC()},
		SubjectHash:      subjectHash(c.RawSubject),
		KeyID:            hex.EncodeToString(c.SubjectKeyId),
	}
	if o.Active {
		n.Status = CAActive
	}
	if o.AutoRegistration {
		n.AutoRegistration = AutoRegistrationEnable
	}
	var out *CACertificate
	err = r.do(ctx, func(tx *tx) error {
		if ok, err := tx.has(n.Key()); err != nil || ok {
			if ok {
				return fmt.Errorf("CA certificate %s: %w", n.ID, ErrAlreadyExists)
			}
			return err
		}
		if err := policiesExist(tx, n.Policies); err != nil {
			return err
		}
		c := *n
		out = &c
		return tx.put(&c, nil)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func policiesExist(tx *tx, names []string) error {
	for _, p := range names {
		if err := mustExist(tx, policyKey(p), "policy "+p); err != nil {
			return err
		}
	}
	return nil
}

// CAUpdate is a change of a CA certificate (AWS's UpdateCACertificate);
// a zero field changes nothing.
type CAUpdate struct {
	// ExpectedVersion, when not 0, must be the CA's version.
	ExpectedVersion int64
	// Status is the new status.
	Status CAStatus
	// AutoRegistration is the new auto-registration status.
	AutoRegistration AutoRegistration
	// AutoActivate, when not nil, is the new AutoActivate.
	AutoActivate *bool
	// Policies, when not nil, replace the CA's policies.
	Policies *[]string
}

// UpdateCA changes the CA certificate id as u says and returns it.
func (r *Registry) UpdateCA(ctx context.Context, id string, u CAUpdate) (*CACertificate, error) {
	n, err := checkCertID("CA certificate", id)
	if err != nil {
		return nil, err
	}
	var out *CACertificate
	err = r.do(ctx, func(tx *tx) error {
		old, err := txGet[CACertificate](tx, caKey(n))
		if err != nil {
			return err
		}
		if u.ExpectedVersion != 0 && u.ExpectedVersion != old.Version() {
			return fmt.Errorf("CA certificate %s is at version %d, not %d: %w", n, old.Version(), u.ExpectedVersion, ErrVersionConflict)
		}
		c := *old
		if u.Status != "" {
			c.Status = u.Status
		}
		if u.AutoRegistration != "" {
			c.AutoRegistration = u.AutoRegistration
		}
		if u.AutoActivate != nil {
			c.AutoActivate = *u.AutoActivate
		}
		if u.Policies != nil {
			c.Policies = slices.Clone(*u.Policies)
			if err := policiesExist(tx, c.Policies); err != nil {
				return err
			}
		}
		if err := c.check(); err != nil {
			return err
		}
		out = &c
		return tx.put(&c, old)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteCA deletes the CA certificate id, which must be INACTIVE (else
// ErrCertificateState). Certificates registered under it stay
// registered.
func (r *Registry) DeleteCA(ctx context.Context, id string) error {
	n, err := checkCertID("CA certificate", id)
	if err != nil {
		return err
	}
	return r.do(ctx, func(tx *tx) error {
		old, err := txGet[CACertificate](tx, caKey(n))
		if err != nil {
			return err
		}
		if old.Status != CAInactive {
			return fmt.Errorf("CA certificate %s is %s (deactivate it first): %w", n, old.Status, ErrCertificateState)
		}
		tx.del(caKey(n))
		return nil
	})
}
