package registry

import (
	"encoding/json"
	"time"
)

// Kind is the kind of a registry entity.
type Kind string

// The entity kinds, as the records' "kind" field names them.
const (
	KindThing            Kind = "thing"
	KindCertificate      Kind = "cert"
	KindCA               Kind = "ca"
	KindPolicy           Kind = "policy"
	KindToken            Kind = "token"
	KindPolicyAttachment Kind = "policy-attachment"
	KindThingAttachment  Kind = "thing-attachment"
)

// Entity is a registry entity: *Thing, *Certificate, *CACertificate,
// *Policy, *Token or *Attachment.
type Entity interface {
	// Key is the entity's record key on the registry topic.
	Key() string
	// Kind is its kind.
	Kind() Kind
	// Version is its version: 1 when created, one more at each update.
	Version() int64
	check() error
	indexKeys() []string
}

// Meta holds what every entity has: its version and times.
type Meta struct {
	// Ver is the entity's version.
	Ver int64 `json:"version"`
	// Created is when it was created.
	Created time.Time `json:"creationDate"`
	// Modified is when it last changed.
	Modified time.Time `json:"lastModifiedDate"`
}

// Version returns the entity's version.
func (m *Meta) Version() int64 { return m.Ver }

// Thing is a device in the registry (AWS's thing).
type Thing struct {
	// Name is the thing name (see CheckThingName).
	Name string `json:"thingName"`
	// ID is a UUID given at creation.
	ID string `json:"thingId"`
	// TypeName is the thing type's name, if any.
	TypeName string `json:"thingTypeName,omitempty"`
	// Attributes are name-value pairs (see CheckAttributes).
	Attributes map[string]string `json:"attributes,omitempty"`
	Meta
}

// Key returns "thing/<name>".
func (t *Thing) Key() string { return thingKey(t.Name) }

// Kind returns KindThing.
func (t *Thing) Kind() Kind { return KindThing }

// CertificateStatus is a certificate's status (AWS's values).
type CertificateStatus string

// The certificate statuses. Only ACTIVE certificates authenticate.
const (
	StatusActive            CertificateStatus = "ACTIVE"
	StatusInactive          CertificateStatus = "INACTIVE"
	StatusRevoked           CertificateStatus = "REVOKED"
	StatusPendingActivation CertificateStatus = "PENDING_ACTIVATION"
	StatusPendingTransfer   CertificateStatus = "PENDING_TRANSFER"
	StatusRegisterInactive  CertificateStatus = "REGISTER_INACTIVE"
)

func (s CertificateStatus) known() bool {
	switch s {
	case StatusActive, StatusInactive, StatusRevoked, StatusPendingActivation, StatusPendingTransfer, StatusRegisterInactive:
		return true
	}
	return false
}

// Validity is a certificate's validity period.
type Validity struct {
	// NotBefore is the start of the period.
	NotBefore time.Time `json:"notBefore"`
	// NotAfter is its end.
	NotAfter time.Time `json:"notAfter"`
}

// Certificate is a device certificate in the registry.
type Certificate struct {
	// ID is the certificate id: SHA-256 of its DER, 64 lower-case hex.
	ID string `json:"certificateId"`
	// Status is the certificate's status.
	Status CertificateStatus `json:"status"`
	// PEM is the certificate.
	PEM string `json:"certificatePem"`
	// CAID is the id of the registered CA that signed it ("" for none:
	// issued by iotpipe's CA or registered without a CA).
	CAID string `json:"caCertificateId,omitempty"`
	// CommonName is the subject's common name
	// (${iot:Certificate.Subject.CommonName}).
	CommonName string `json:"commonName,omitempty"`
	// Validity is the certificate's validity period.
	Validity Validity `json:"validity"`
	Meta
}

// Key returns "cert/<id>".
func (c *Certificate) Key() string { return certKey(c.ID) }

// Kind returns KindCertificate.
func (c *Certificate) Kind() Kind { return KindCertificate }

// CAStatus is a CA certificate's status.
type CAStatus string

// The CA certificate statuses.
const (
	CAActive   CAStatus = "ACTIVE"
	CAInactive CAStatus = "INACTIVE"
)

// AutoRegistration says whether a CA's certificates are registered on
// their first connect (AWS's autoRegistrationStatus).
type AutoRegistration string

// The auto-registration statuses.
const (
	AutoRegistrationEnable  AutoRegistration = "ENABLE"
	AutoRegistrationDisable AutoRegistration = "DISABLE"
)

// CACertificate is a registered CA certificate: devices it signed may be
// registered just in time.
type CACertificate struct {
	// ID is the CA certificate's id (SHA-256 of its DER, hex).
	ID string `json:"certificateId"`
	// Status is ACTIVE or INACTIVE; only an ACTIVE CA registers devices.
	Status CAStatus `json:"status"`
	// PEM is the CA certificate.
	PEM string `json:"certificatePem"`
	// AutoRegistration is ENABLE when devices it signed are registered
	// on their first connect.
	AutoRegistration AutoRegistration `json:"autoRegistrationStatus"`
	// AutoActivate registers those certificates ACTIVE rather than
	// PENDING_ACTIVATION (iotpipe's stand-in for a provisioning
	// template that activates them).
	AutoActivate bool `json:"autoActivate,omitempty"`
	// Policies are attached to each certificate registered under it.
	Policies []string `json:"policies,omitempty"`
	// CommonName is the subject's common name.
	CommonName string `json:"commonName,omitempty"`
	// Validity is the CA certificate's validity period.
	Validity Validity `json:"validity"`
	// SubjectHash is the SHA-256 of the raw subject, hex: how a device
	// certificate's issuer name finds it.
	SubjectHash string `json:"subjectHash"`
	// KeyID is the subject key identifier, hex: how a device
	// certificate's authority key identifier finds it.
	KeyID string `json:"subjectKeyId,omitempty"`
	Meta
}

// Key returns "ca/<id>".
func (c *CACertificate) Key() string { return caKey(c.ID) }

// Kind returns KindCA.
func (c *CACertificate) Kind() Kind { return KindCA }

// Policy is a named policy document (AWS IoT's JSON grammar, checked by
// the Options.CheckPolicy function).
type Policy struct {
	// Name is the policy name (see CheckPolicyName).
	Name string `json:"policyName"`
	// Document is the policy document as given (a JSON object).
	Document json.RawMessage `json:"policyDocument"`
	Meta
}

// Key returns "policy/<name>".
func (p *Policy) Key() string { return policyKey(p.Name) }

// Kind returns KindPolicy.
func (p *Policy) Kind() Kind { return KindPolicy }

// Token is a bearer credential of a token principal: its secret is
// shown once at creation, only its hash is kept.
type Token struct {
	// ID names the token (16 hex characters) for listing and revoking.
	ID string `json:"tokenId"`
	// Principal is the principal it authenticates as (see
	// CheckTokenPrincipal); policies attach to it.
	Principal string `json:"principal"`
	// Description is free text.
	Description string `json:"description,omitempty"`
	// SecretHash is the SHA-256 of the secret, hex.
	SecretHash string `json:"secretHash"`
	Meta
}

// Key returns "token/<id>".
func (t *Token) Key() string { return tokenKey(t.ID) }

// Kind returns KindToken.
func (t *Token) Kind() Kind { return KindToken }

// Attachment attaches a policy, or a thing, to a principal (a
// certificate id or a token principal).
type Attachment struct {
	// Principal is the certificate id or token principal.
	Principal string `json:"principal"`
	// Policy is the attached policy's name (a policy attachment).
	Policy string `json:"policyName,omitempty"`
	// Thing is the attached thing's name (a thing attachment).
	Thing string `json:"thingName,omitempty"`
	Meta
}

// Key returns "attach/<principal>/policy/<name>" or
// "attach/<principal>/thing/<name>".
func (a *Attachment) Key() string {
	if a.Thing != "" {
		return thingAttachKey(a.Principal, a.Thing)
	}
	return policyAttachKey(a.Principal, a.Policy)
}

// Kind returns KindPolicyAttachment or KindThingAttachment.
func (a *Attachment) Kind() Kind {
	if a.Thing != "" {
		return KindThingAttachment
	}
	return KindPolicyAttachment
}

// Record keys on the registry topic.
func thingKey(name string) string        { return "thing/" + name }
func certKey(id string) string           { return "cert/" + id }
func caKey(id string) string             { return "ca/" + id }
func policyKey(name string) string       { return "policy/" + name }
func tokenKey(id string) string          { return "token/" + id }
func attachPrefix(p string) string       { return "attach/" + p + "/" }
func policyAttachPrefix(p string) string { return attachPrefix(p) + "policy/" }
func thingAttachPrefix(p string) string  { return attachPrefix(p) + "thing/" }
func policyAttachKey(p, policy string) string {
	return policyAttachPrefix(p) + policy
}
func thingAttachKey(p, thing string) string { return thingAttachPrefix(p) + thing }
