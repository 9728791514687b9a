package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/iotpipe/iotpipe/ingest/registry"
)

// --- things --------------------------------------------------------------

// ThingRequest creates a thing (POST /api/registry/things).
type ThingRequest struct {
	Name       string            `json:"thingName"`
	TypeName   string            `json:"thingTypeName,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

func (a *api) listThings(r *http.Request) (int, any, error) {
	return page(r, a.reg.ListThings, func(t *registry.Thing) string { return t.Name })
}

func (a *api) createThing(r *http.Request) (int, any, error) {
	var req ThingRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	t, err := a.reg.CreateThing(r.Context(), registry.Thing{Name: req.Name, TypeName: req.TypeName, Attributes: req.Attributes})
	return http.StatusCreated, t, err
}

// ThingDescription is a thing with the principals attached to it.
type ThingDescription struct {
	*registry.Thing
	Principals []string `json:"principals"`
}

func (a *api) describeThing(r *http.Request) (int, any, error) {
	name := r.PathValue("name")
	t, err := a.reg.Thing(name)
	if err != nil {
		return 0, nil, err
	}
	ps, err := a.reg.ThingPrincipals(name)
	if ps == nil {
		ps = []string{}
	}
	return 0, ThingDescription{Thing: t, Principals: ps}, err
}

// ThingUpdateRequest changes a thing (PATCH /api/registry/things/{name}):
// AWS's UpdateThing.
type ThingUpdateRequest struct {
	// TypeName, when present, is the new type ("" removes it).
	TypeName *string `json:"thingTypeName,omitempty"`
	// Attributes replace the thing's, or with Merge are merged into them
	// (an empty value removes that attribute).
	Attributes map[string]string `json:"attributes,omitempty"`
	Merge      bool              `json:"merge,omitempty"`
	// ExpectedVersion, when not 0, must be the thing's version (409
	// otherwise).
	ExpectedVersion int64 `json:"expectedVersion,omitempty"`
}

func (a *api) updateThing(r *http.Request) (int, any, error) {
	var req ThingUpdateRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	t, err := a.reg.UpdateThing(r.Context(), r.PathValue("name"), registry.ThingUpdate{
		ExpectedVersion: req.ExpectedVersion, TypeName: req.TypeName, Attributes: req.Attributes, Merge: req.Merge})
	return 0, t, err
}

func (a *api) deleteThing(r *http.Request) (int, any, error) {
	v, err := expectedVersion(r)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, a.reg.DeleteThing(r.Context(), r.PathValue("name"), v)
}

func (a *api) attachThing(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, a.reg.AttachThingPrincipal(r.Context(), r.PathValue("name"), r.PathValue("principal"))
}

func (a *api) detachThing(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, a.reg.DetachThingPrincipal(r.Context(), r.PathValue("name"), r.PathValue("principal"))
}

// --- certificates ----------------------------------------------------------

func (a *api) listCertificates(r *http.Request) (int, any, error) {
	list := a.reg.ListCertificates
	if ca := r.URL.Query().Get("ca"); ca != "" {
		list = func(o registry.ListOptions) ([]*registry.Certificate, error) {
			return a.reg.ListCertificatesByCA(ca, o)
		}
	}
	return page(r, list, func(c *registry.Certificate) string { return c.ID })
}

// CreateCertificateRequest issues a key and certificate for a thing with
// iotpipe's CA (POST /api/registry/certificates): AWS's
// CreateKeysAndCertificate and AttachThingPrincipal in one.
type CreateCertificateRequest struct {
	// Thing is the thing it is for (it must exist): the subject's CN.
	Thing string `json:"thingName"`
	// Policies are attached to the certificate.
	Policies []string `json:"policies,omitempty"`
	// ValidityDays is its lifetime in days (default 730).
	ValidityDays int `json:"validityDays,omitempty"`
	// Status is ACTIVE (default) or INACTIVE.
	Status registry.CertificateStatus `json:"status,omitempty"`
}

// CreatedCertificate is the answer to CreateCertificateRequest: the only
// time the private key is shown.
type CreatedCertificate struct {
	*registry.Certificate
	// KeyPEM is the private key (PKCS #8 PEM); iotpipe keeps no copy.
	KeyPEM string `json:"privateKeyPem"`
	// CAPEM is iotpipe's CA certificate: what devices verify the
	// server with.
	CAPEM string `json:"caCertificatePem"`
}

func (a *api) createCertificate(r *http.Request) (int, any, error) {
	var req CreateCertificateRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if a.ca == nil {
		return 0, nil, fmt.Errorf("%w: this node has no CA to issue certificates with", errBadRequest)
	}
	if req.ValidityDays < 0 || req.ValidityDays > 20*365 {
		return 0, nil, fmt.Errorf("%w: validityDays %d: want 1 to %d", errBadRequest, req.ValidityDays, 20*365)
	}
	c, is, err := a.reg.CreateCertificate(r.Context(), a.ca, registry.CreateOptions{
		Thing: req.Thing, Policies: req.Policies, Status: req.Status, Validity: time.Duration(req.ValidityDays) * 24 * time.Hour})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, CreatedCertificate{Certificate: c, KeyPEM: string(is.KeyPEM), CAPEM: string(a.ca.CertificatePEM())}, nil
}

// RegisterCertificateRequest registers a certificate the user brings
// (POST /api/registry/certificates/register): AWS's RegisterCertificate.
type RegisterCertificateRequest struct {
	PEM string `json:"certificatePem"`
	// Status is ACTIVE, INACTIVE (default) or REVOKED.
	Status   registry.CertificateStatus `json:"status,omitempty"`
	Thing    string                     `json:"thingName,omitempty"`
	Policies []string                   `json:"policies,omitempty"`
}

func (a *api) registerCertificate(r *http.Request) (int, any, error) {
	var req RegisterCertificateRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	c, err := a.reg.RegisterCertificate(r.Context(), []byte(req.PEM), registry.RegisterOptions{Status: req.Status, Thing: req.Thing, Policies: req.Policies})
	return http.StatusCreated, c, err
}

func (a *api) describeCertificate(r *http.Request) (int, any, error) {
	c, err := a.reg.Certificate(r.PathValue("id"))
	return 0, c, err
}

// StatusRequest sets a certificate's status (PUT
// /api/registry/certificates/{id}/status).
type StatusRequest struct {
	Status registry.CertificateStatus `json:"status"`
}

func (a *api) setCertificateStatus(r *http.Request) (int, any, error) {
	var req StatusRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	c, err := a.reg.SetCertificateStatus(r.Context(), r.PathValue("id"), req.Status)
	return 0, c, err
}

func (a *api) deleteCertificate(r *http.Request) (int, any, error) {
	force, err := boolQuery(r, "force")
	if err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, a.reg.DeleteCertificate(r.Context(), r.PathValue("id"), force)
}

// --- CA certificates ---------------------------------------------------------

func (a *api) listCAs(r *http.Request) (int, any, error) {
	return page(r, a.reg.ListCAs, func(c *registry.CACertificate) string { return c.ID })
}

// RegisterCARequest registers a CA certificate (POST
// /api/registry/cas): AWS's RegisterCACertificate.
type RegisterCARequest struct {
	PEM string `json:"caCertificatePem"`
	// SetAsActive registers it ACTIVE (default INACTIVE, as AWS).
	SetAsActive bool `json:"setAsActive,omitempty"`
	// AllowAutoRegistration registers the certificates it signed on
	// their first connect.
	AllowAutoRegistration bool `json:"allowAutoRegistration,omitempty"`
	// AutoActivate registers them ACTIVE, not PENDING_ACTIVATION.
	AutoActivate bool `json:"autoActivate,omitempty"`
	// Policies are attached to each certificate registered under it.
	Policies []string `json:"policies,omitempty"`
}

func (a *api) registerCA(r *http.Request) (int, any, error) {
	var req RegisterCARequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	c, err := a.reg.RegisterCA(r.Context(), []byte(req.PEM), registry.CAOptions{
		Active: req.SetAsActive, AutoRegistration: req.AllowAutoRegistration, AutoActivate: req.AutoActivate, Policies: req.Policies})
	return http.StatusCreated, c, err
}

func (a *api) describeCA(r *http.Request) (int, any, error) {
	c, err := a.reg.CA(r.PathValue("id"))
	return 0, c, err
}

// CAUpdateRequest changes a CA certificate (PATCH /api/registry/cas/{id}):
// AWS's UpdateCACertificate. Absent fields stay as they are.
type CAUpdateRequest struct {
	Status           registry.CAStatus         `json:"status,omitempty"`
	AutoRegistration registry.AutoRegistration `json:"autoRegistrationStatus,omitempty"`
	AutoActivate     *bool                     `json:"autoActivate,omitempty"`
	Policies         *[]string                 `json:"policies,omitempty"`
	ExpectedVersion  int64                     `json:"expectedVersion,omitempty"`
}

func (a *api) updateCA(r *http.Request) (int, any, error) {
	var req CAUpdateRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	c, err := a.reg.UpdateCA(r.Context(), r.PathValue("id"), registry.CAUpdate{ExpectedVersion: req.ExpectedVersion,
		Status: req.Status, AutoRegistration: req.AutoRegistration, AutoActivate: req.AutoActivate, Policies: req.Policies})
	return 0, c, err
}

func (a *api) deleteCA(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, a.reg.DeleteCA(r.Context(), r.PathValue("id"))
}

// --- policies ------------------------------------------------------------------

func (a *api) listPolicies(r *http.Request) (int, any, error) {
	return page(r, a.reg.ListPolicies, func(p *registry.Policy) string { return p.Name })
}

// PolicyRequest creates (POST /api/registry/policies) or updates (PUT
// /api/registry/policies/{name}) a policy.
type PolicyRequest struct {
	// Name names the policy (creating only).
	Name string `json:"policyName,omitempty"`
	// Document is the policy document, a JSON object in AWS IoT's
	// grammar.
	Document json.RawMessage `json:"policyDocument"`
	// ExpectedVersion, when not 0, must be the policy's version
	// (updating only).
	ExpectedVersion int64 `json:"expectedVersion,omitempty"`
}

func (a *api) createPolicy(r *http.Request) (int, any, error) {
	var req PolicyRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	p, err := a.reg.CreatePolicy(r.Context(), req.Name, req.Document)
	return http.StatusCreated, p, err
}

// PolicyDescription is a policy with the principals it is attached to.
type PolicyDescription struct {
	*registry.Policy
	Principals []string `json:"principals"`
}

func (a *api) getPolicy(r *http.Request) (int, any, error) {
	name := r.PathValue("name")
	p, err := a.reg.Policy(name)
	if err != nil {
		return 0, nil, err
	}
	ps, err := a.reg.PolicyPrincipals(name)
	if ps == nil {
		ps = []string{}
	}
	return 0, PolicyDescription{Policy: p, Principals: ps}, err
}

func (a *api) updatePolicy(r *http.Request) (int, any, error) {
	var req PolicyRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	if req.Name != "" && req.Name != r.PathValue("name") {
		return 0, nil, fmt.Errorf("%w: policyName %q is not the policy of the path (%q)", errBadRequest, req.Name, r.PathValue("name"))
	}
	p, err := a.reg.UpdatePolicy(r.Context(), r.PathValue("name"), req.Document, req.ExpectedVersion)
	return 0, p, err
}

func (a *api) deletePolicy(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, a.reg.DeletePolicy(r.Context(), r.PathValue("name"))
}

func (a *api) attachPolicy(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, a.reg.AttachPolicy(r.Context(), r.PathValue("name"), r.PathValue("principal"))
}

func (a *api) detachPolicy(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, a.reg.DetachPolicy(r.Context(), r.PathValue("name"), r.PathValue("principal"))
}

// --- tokens ----------------------------------------------------------------------

func (a *api) listTokens(r *http.Request) (int, any, error) {
	return page(r, a.reg.ListTokens, func(t *registry.Token) string { return t.ID })
}

// TokenRequest creates a token (POST /api/registry/tokens).
type TokenRequest struct {
	Principal   string   `json:"principal"`
	Description string   `json:"description,omitempty"`
	Policies    []string `json:"policies,omitempty"`
}

// CreatedToken is the answer to TokenRequest: the only time the secret
// is shown.
type CreatedToken struct {
	*registry.Token
	Secret string `json:"secret"`
}

func (a *api) createToken(r *http.Request) (int, any, error) {
	var req TokenRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	t, secret, err := a.reg.CreateToken(r.Context(), registry.TokenOptions{Principal: req.Principal, Description: req.Description, Policies: req.Policies})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, CreatedToken{Token: t, Secret: secret}, nil
}

func (a *api) revokeToken(r *http.Request) (int, any, error) {
	return http.StatusNoContent, nil, a.reg.RevokeToken(r.Context(), r.PathValue("id"))
}
