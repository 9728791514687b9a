package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble"
	"github.com/iotpipe/iotpipe/ingest/pki"
)

// The lookups read this node's view: Pebble gets, or scans of one short
// key range (the attachments of one principal), never of the whole
// registry. They see a write once this node's view applied it.

// Thing returns the thing named name.
func (r *Registry) Thing(name string) (*Thing, error) {
	return get[Thing](r.db, thingKey(name))
}

// Certificate returns the certificate with id (upper case and a 0x
// prefix are accepted).
func (r *Registry) Certificate(id string) (*Certificate, error) {
	n, err := checkCertID("certificate", id)
	if err != nil {
		return nil, err
	}
	return get[Certificate](r.db, certKey(n))
}

// CA returns the registered CA certificate with id.
func (r *Registry) CA(id string) (*CACertificate, error) {
	n, err := checkCertID("CA certificate", id)
	if err != nil {
		return nil, err
	}
	return get[CACertificate](r.db, caKey(n))
}

// CAsFor returns the registered CA certificates that may have signed a
// certificate naming iss as its issuer: those whose subject key id is
// the issuer's key id, then those with the issuer's subject, each once.
// VerifyChain decides which one did.
func (r *Registry) CAsFor(iss pki.Issuer) ([]*CACertificate, error) {
	return casFor(r.db, iss)
}

func casFor(rd pebble.Reader, iss pki.Issuer) ([]*CACertificate, error) {
	var ids []string
	if len(iss.KeyID) > 0 {
		byKey, err := suffixes(rd, []byte(indexCAByKeyID+hex.EncodeToString(iss.KeyID)+"/"), "", 0)
		if err != nil {
			return nil, err
		}
		ids = byKey
	}
	bySubject, err := suffixes(rd, []byte(indexCABySubject+subjectHash(iss.RawSubject)+"/"), "", 0)
	if err != nil {
		return nil, err
	}
	for _, id := range bySubject {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	out := make([]*CACertificate, 0, len(ids))
	for _, id := range ids {
		ca, err := get[CACertificate](rd, caKey(id))
		if err != nil {
			return nil, err
		}
		out = append(out, ca)
	}
	return out, nil
}

// Policy returns the policy named name.
func (r *Registry) Policy(name string) (*Policy, error) {
	return get[Policy](r.db, policyKey(name))
}

// Token returns the token with id.
func (r *Registry) Token(id string) (*Token, error) {
	return get[Token](r.db, tokenKey(id))
}

// TokenBySecret returns the token whose secret is secret (found by the
// secret's hash: the secret itself is kept nowhere), or ErrNotFound.
func (r *Registry) TokenBySecret(secret string) (*Token, error) {
	ids, err := suffixes(r.db, []byte(indexTokenByHash+secretHash(secret)+"/"), "", 1)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("token: %w", ErrNotFound)
	}
	return r.Token(ids[0])
}

func secretHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// PrincipalPolicies returns the policies attached to principal (a
// certificate id or a token principal), by name.
func (r *Registry) PrincipalPolicies(principal string) ([]*Policy, error) {
	names, err := suffixes(r.db, entityKey(policyAttachPrefix(principal)), "", 0)
	if err != nil {
		return nil, err
	}
	out := make([]*Policy, 0, len(names))
	for _, n := range names {
		p, err := r.Policy(n)
		if err != nil {
			return nil, fmt.Errorf("policy %s attached to %s: %w", n, principal, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// PrincipalThings returns the names of the things attached to
// principal, in order.
func (r *Registry) PrincipalThings(principal string) ([]string, error) {
	return suffixes(r.db, entityKey(thingAttachPrefix(principal)), "", 0)
}

// Attached reports whether thing is attached to principal (AWS's
// iot:Connection.Thing.IsAttached when the client id is thing).
func (r *Registry) Attached(principal, thing string) (bool, error) {
	return exists(r.db, thingAttachKey(principal, thing))
}

// ThingPrincipals returns the principals thing is attached to.
func (r *Registry) ThingPrincipals(thing string) ([]string, error) {
	return suffixes(r.db, []byte(indexPrincipalsOfThing+thing+"/"), "", 0)
}

// PolicyPrincipals returns the principals policy is attached to.
func (r *Registry) PolicyPrincipals(policy string) ([]string, error) {
	return suffixes(r.db, []byte(indexPrincipalsOfPolicy+policy+"/"), "", 0)
}

// ListOptions pages a list: the entities after After (a name or id,
// exclusive), at most Limit of them (0: all), in name or id order.
type ListOptions struct {
	After string
	Limit int
}

// ListThings lists things by name.
func (r *Registry) ListThings(o ListOptions) ([]*Thing, error) {
	return list[Thing](r.db, thingKey(""), o.After, o.Limit)
}

// ListCertificates lists certificates by id.
func (r *Registry) ListCertificates(o ListOptions) ([]*Certificate, error) {
	return list[Certificate](r.db, certKey(""), o.After, o.Limit)
}

// ListCertificatesByCA lists the certificates registered under the CA
// certificate caID, by id.
func (r *Registry) ListCertificatesByCA(caID string, o ListOptions) ([]*Certificate, error) {
	n, err := checkCertID("CA certificate", caID)
	if err != nil {
		return nil, err
	}
	ids, err := suffixes(r.db, []byte(indexCertsOfCA+n+"/"), o.After, o.Limit)
	if err != nil {
		return nil, err
	}
	out := make([]*Certificate, 0, len(ids))
	for _, id := range ids {
		c, err := get[Certificate](r.db, certKey(id))
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// ListCAs lists the registered CA certificates by id.
func (r *Registry) ListCAs(o ListOptions) ([]*CACertificate, error) {
	return list[CACertificate](r.db, caKey(""), o.After, o.Limit)
}

// ListPolicies lists policies by name.
func (r *Registry) ListPolicies(o ListOptions) ([]*Policy, error) {
	return list[Policy](r.db, policyKey(""), o.After, o.Limit)
}

// ListTokens lists tokens by id (their secrets are kept nowhere).
func (r *Registry) ListTokens(o ListOptions) ([]*Token, error) {
	return list[Token](r.db, tokenKey(""), o.After, o.Limit)
}
