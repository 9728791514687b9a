package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// checkPolicy checks a policy's name and document: a JSON object of at
// most MaxPolicyDocument characters without white space, accepted by
// Options.CheckPolicy when set.
func (r *Registry) checkPolicy(name string, doc []byte) error {
	if err := CheckPolicyName(name); err != nil {
		return err
	}
	if err := checkPolicyDocument(doc); err != nil {
		return fmt.Errorf("policy %s: %w", name, err)
	}
	if r.opts.CheckPolicy != nil {
		if err := r.opts.CheckPolicy(doc); err != nil {
			if !errors.Is(err, ErrInvalid) {
				err = fmt.Errorf("%w: %w", ErrInvalid, err)
			}
			return fmt.Errorf("policy %s: %w", name, err)
		}
	}
	return nil
}

// CreatePolicy creates the policy name with document doc (version 1);
// one that exists is ErrAlreadyExists.
func (r *Registry) CreatePolicy(ctx context.Context, name string, doc []byte) (*Policy, error) {
	if err := r.checkPolicy(name, doc); err != nil {
		return nil, err
	}
	var out *Policy
	err := r.do(ctx, func(tx *tx) error {
		if ok, err := tx.has(policyKey(name)); err != nil || ok {
			if ok {
				return fmt.Errorf("policy %s: %w", name, ErrAlreadyExists)
			}
			return err
		}
		p := &Policy{Name: name, Document: bytes.Clone(doc)}
		out = p
		return tx.put(p, nil)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UpdatePolicy replaces the document of policy name, which becomes its
// next version (AWS's CreatePolicyVersion with setAsDefault; older
// versions are not kept). expectedVersion, when not 0, must be its
// version.
func (r *Registry) UpdatePolicy(ctx context.Context, name string, doc []byte, expectedVersion int64) (*Policy, error) {
	if err := r.checkPolicy(name, doc); err != nil {
		return nil, err
	}
	var out *Policy
	err := r.do(ctx, func(tx *tx) error {
		old, err := txGet[Policy](tx, policyKey(name))
		if err != nil {
			return err
		}
		if expectedVersion != 0 && expectedVersion != old.Version() {
			return fmt.Errorf("policy %s is at version %d, not %d: %w", name, old.Version(), expectedVersion, ErrVersionConflict)
		}
		p := *old
		p.Document = bytes.Clone(doc)
		out = &p
		return tx.put(&p, old)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeletePolicy deletes the policy name; one attached to a principal is
// ErrDeleteConflict (AWS's DeleteConflictException).
func (r *Registry) DeletePolicy(ctx context.Context, name string) error {
	if err := CheckPolicyName(name); err != nil {
		return err
	}
	return r.do(ctx, func(tx *tx) error {
		if err := mustExist(tx, policyKey(name), "policy "+name); err != nil {
			return err
		}
		principals, err := suffixes(tx.b, []byte(indexPrincipalsOfPolicy+name+"/"), "", 1)
		if err != nil {
			return err
		}
		if len(principals) > 0 {
			return fmt.Errorf("policy %s is attached to %s (detach it first): %w", name, principals[0], ErrDeleteConflict)
		}
		tx.del(policyKey(name))
		return nil
	})
}

// AttachPolicy attaches policy to principal (a certificate id or a token
// principal); both must exist. Attaching twice is the same as once.
func (r *Registry) AttachPolicy(ctx context.Context, policy, principal string) error {
	p, err := checkAttach(policy, principal, CheckPolicyName)
	if err != nil {
		return err
	}
	return r.do(ctx, func(tx *tx) error {
		if err := mustExist(tx, policyKey(policy), "policy "+policy); err != nil {
			return err
		}
		return attach(tx, &Attachment{Principal: p, Policy: policy})
	})
}

// DetachPolicy detaches policy from principal; detaching what is not
// attached succeeds.
func (r *Registry) DetachPolicy(ctx context.Context, policy, principal string) error {
	p, err := checkAttach(policy, principal, CheckPolicyName)
	if err != nil {
		return err
	}
	return r.do(ctx, func(tx *tx) error { return detach(tx, policyAttachKey(p, policy)) })
}
