package registry

import (
	"context"
	"errors"
	"fmt"
	"maps"

	"github.com/google/uuid"
)

// CreateThing creates the thing t.Name with t's type and attributes (its
// other fields are set here). As AWS's CreateThing, creating a thing
// that exists with the same type and attributes returns it; with
// others, ErrAlreadyExists.
func (r *Registry) CreateThing(ctx context.Context, t Thing) (*Thing, error) {
	n := &Thing{Name: t.Name, TypeName: t.TypeName, Attributes: maps.Clone(t.Attributes)}
	if err := n.check(); err != nil {
		return nil, err
	}
	var out *Thing
	err := r.do(ctx, func(tx *tx) error {
		old, err := txGet[Thing](tx, thingKey(n.Name))
		switch {
		case err == nil:
			if old.TypeName == n.TypeName && maps.Equal(old.Attributes, n.Attributes) {
				out = old
				return nil
			}
			return fmt.Errorf("thing %s: %w with other attributes or type", n.Name, ErrAlreadyExists)
		case !errors.Is(err, ErrNotFound):
			return err
		}
		c := *n
		c.ID = uuid.NewString()
		out = &c
		return tx.put(&c, nil)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ThingUpdate is a change of a thing (AWS's UpdateThing).
type ThingUpdate struct {
	// ExpectedVersion, when not 0, must be the thing's version, or the
	// update fails with ErrVersionConflict.
	ExpectedVersion int64
	// TypeName, when not nil, is the new type name ("" removes it).
	TypeName *string
	// Attributes are the new attributes. Without Merge they replace
	// every attribute (nil keeps them); with Merge they are added, and
	// an attribute given an empty value is removed.
	Attributes map[string]string
	// Merge merges Attributes into the thing's.
	Merge bool
}

// UpdateThing changes the thing name as u says and returns it.
func (r *Registry) UpdateThing(ctx context.Context, name string, u ThingUpdate) (*Thing, error) {
	if err := CheckThingName(name); err != nil {
		return nil, err
	}
	var out *Thing
	err := r.do(ctx, func(tx *tx) error {
		old, err := txGet[Thing](tx, thingKey(name))
		if err != nil {
			return err
		}
		if u.ExpectedVersion != 0 && u.ExpectedVersion != old.Version() {
			return fmt.Errorf("thing %s is at version %d, not %d: %w", name, old.Version(), u.ExpectedVersion, ErrVersionConflict)
		}
		n := *old
		if u.TypeName != nil {
			n.TypeName = *u.TypeName
		}
		switch {
		case u.Merge:
			n.Attributes = maps.Clone(old.Attributes)
			if n.Attributes == nil {
				n.Attributes = map[string]string{}
			}
			for k, v := range u.Attributes {
				if v == "" {
					delete(n.Attributes, k)
				} else {
					n.Attributes[k] = v
				}
			}
		case u.Attributes != nil:
			n.Attributes = maps.Clone(u.Attributes)
		}
		if len(n.Attributes) == 0 {
			n.Attributes = nil
		}
		if err := n.check(); err != nil {
			return err
		}
		out = &n
		return tx.put(&n, old)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteThing deletes the thing name and detaches it from its
// principals (whose live sessions then end: see Change.Ends). As AWS's
// DeleteThing, deleting a thing that does not exist succeeds;
// expectedVersion, when not 0, must be the thing's version.
func (r *Registry) DeleteThing(ctx context.Context, name string, expectedVersion int64) error {
	if err := CheckThingName(name); err != nil {
		return err
	}
	return r.do(ctx, func(tx *tx) error {
		old, err := txGet[Thing](tx, thingKey(name))
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if expectedVersion != 0 && expectedVersion != old.Version() {
			return fmt.Errorf("thing %s is at version %d, not %d: %w", name, old.Version(), expectedVersion, ErrVersionConflict)
		}
		principals, err := suffixes(tx.b, []byte(indexPrincipalsOfThing+name+"/"), "", 0)
		if err != nil {
			return err
		}
		for _, p := range principals {
			tx.del(thingAttachKey(p, name))
		}
		tx.del(thingKey(name))
		return nil
	})
}

// AttachThingPrincipal attaches the thing to principal (a certificate id
// or a token principal); both must exist. Attaching twice is the same
// as once.
func (r *Registry) AttachThingPrincipal(ctx context.Context, thing, principal string) error {
	p, err := checkAttach(thing, principal, CheckThingName)
	if err != nil {
		return err
	}
	return r.do(ctx, func(tx *tx) error {
		if err := mustExist(tx, thingKey(thing), "thing "+thing); err != nil {
			return err
		}
		return attach(tx, &Attachment{Principal: p, Thing: thing})
	})
}

// DetachThingPrincipal detaches the thing from principal; detaching
// what is not attached succeeds.
func (r *Registry) DetachThingPrincipal(ctx context.Context, thing, principal string) error {
	p, err := checkAttach(thing, principal, CheckThingName)
	if err != nil {
		return err
	}
	return r.do(ctx, func(tx *tx) error { return detach(tx, thingAttachKey(p, thing)) })
}

// checkAttach checks an attachment's target name and principal and
// returns the principal in canonical form.
func checkAttach(name, principal string, check func(string) error) (string, error) {
	if err := check(name); err != nil {
		return "", err
	}
	return CheckPrincipal(principal)
}

func mustExist(tx *tx, key, what string) error {
	ok, err := tx.has(key)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}

// attach writes a (after checking its principal exists) unless it
// exists.
func attach(tx *tx, a *Attachment) error {
	if err := principalExists(tx, a.Principal); err != nil {
		return err
	}
	ok, err := tx.has(a.Key())
	if err != nil || ok {
		return err
	}
	return tx.put(a, nil)
}

func detach(tx *tx, key string) error {
	ok, err := tx.has(key)
	if err != nil || !ok {
		return err
	}
	tx.del(key)
	return nil
}

// principalExists checks that principal is a registered certificate or
// the principal of a token.
func principalExists(tx *tx, principal string) error {
	if _, err := checkCertID("", principal); err == nil {
		return mustExist(tx, certKey(principal), "certificate "+principal)
	}
	tokens, err := suffixes(tx.b, []byte(indexTokensOf+principal+"/"), "", 1)
	if err != nil {
		return err
	}
	if len(tokens) == 0 {
		return fmt.Errorf("token principal %s (no token has it): %w", principal, ErrNotFound)
	}
	return nil
}
