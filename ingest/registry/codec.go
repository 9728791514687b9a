package registry

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/iotpipe/iotpipe/ingest/pki"
	fastjson "github.com/segmentio/encoding/json"
)

// A record on the registry topic is keyed by its entity (see the Key
// methods) and its value is the entity's JSON document with two more
// fields, "format" (this encoding's version, formatVersion) and "kind";
// a delete is a tombstone (nil value). The topic is compacted: the last
// record of a key is the entity.
const formatVersion = 1

// encode returns e's record value.
func encode(e Entity) ([]byte, error) {
	body, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", e.Key(), err)
	}
	head := fmt.Sprintf(`{"format":%d,"kind":%q,`, formatVersion, e.Kind())
	return append([]byte(head), body[1:]...), nil
}

// newEntity returns an empty entity of the kind key names, or nil.
func newEntity(key string) Entity {
	prefix, _, _ := strings.Cut(key, "/")
	switch prefix {
	case "thing":
		return new(Thing)
	case "cert":
		return new(Certificate)
	case "ca":
		return new(CACertificate)
	case "policy":
		return new(Policy)
	case "token":
		return new(Token)
	case "attach":
		return new(Attachment)
	}
	return nil
}

// Decode decodes a record of the registry topic: its key and value
// (never nil: a tombstone has no entity). It checks everything a record
// must hold to be applied: the format version, the kind and the key
// matching the entity, names, statuses, and for certificates their PEM
// and id. A record that fails is not applied (the view treats it as a
// tombstone of its key and counts it).
func Decode(key, value []byte) (Entity, error) {
	k := string(key)
	e := newEntity(k)
	if e == nil {
		return nil, fmt.Errorf("%w: record key %q names no registry entity", ErrInvalid, k)
	}
	var head struct {
		Format int  `json:"format"`
		Kind   Kind `json:"kind"`
	}
	if err := json.Unmarshal(value, &head); err != nil {
		return nil, fmt.Errorf("%w: record %s: %v", ErrInvalid, k, err)
	}
	if head.Format != formatVersion {
		return nil, fmt.Errorf("%w: record %s has format %d; this iotpipe reads format %d (a newer iotpipe wrote it: upgrade this node)", ErrInvalid, k, head.Format, formatVersion)
	}
	if err := json.Unmarshal(value, e); err != nil {
		return nil, fmt.Errorf("%w: record %s: %v", ErrInvalid, k, err)
	}
	if head.Kind != e.Kind() {
		return nil, fmt.Errorf("%w: record %s holds kind %q", ErrInvalid, k, head.Kind)
	}
	if e.Key() != k {
		return nil, fmt.Errorf("%w: record %s holds %s", ErrInvalid, k, e.Key())
	}
	if e.Version() < 1 {
		return nil, fmt.Errorf("%w: record %s has version %d", ErrInvalid, k, e.Version())
	}
	if err := e.check(); err != nil {
		return nil, fmt.Errorf("record %s: %w", k, err)
	}
	return e, nil
}

// decodeStored decodes a value the view stored (Decode accepted it): a
// lookup's cost, so with segmentio's decoder (0.78x the time of
// encoding/json for the lookups of a CONNECT, BenchmarkConnectLookups).
func decodeStored[T any, P interface {
	*T
	Entity
}](value []byte) (P, error) {
	e := P(new(T))
	if err := fastjson.Unmarshal(value, e); err != nil {
		return nil, fmt.Errorf("stored %T: %w", e, err)
	}
	return e, nil
}

func (t *Thing) check() error {
	if err := CheckThingName(t.Name); err != nil {
		return err
	}
	if t.TypeName != "" {
		if err := CheckThingTypeName(t.TypeName); err != nil {
			return err
		}
	}
	return CheckAttributes(t.Attributes)
}

func (t *Thing) indexKeys() []string { return nil }

func (c *Certificate) check() error {
	if _, err := checkCertID("certificate", c.ID); err != nil || c.ID != strings.ToLower(c.ID) {
		return fmt.Errorf("%w: certificate id %q", ErrInvalid, c.ID)
	}
	if !c.Status.known() {
		return fmt.Errorf("%w: certificate status %q", ErrInvalid, c.Status)
	}
	if c.CAID != "" {
		if _, err := checkCertID("CA certificate", c.CAID); err != nil {
			return err
		}
	}
	certs, err := pki.ParsePEM([]byte(c.PEM))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(certs) != 1 || pki.ID(certs[0].Raw) != c.ID {
		return fmt.Errorf("%w: the PEM of certificate %s is not that certificate", ErrInvalid, c.ID)
	}
	return nil
}

func (c *Certificate) indexKeys() []string {
	if c.CAID == "" {
		return nil
	}
	return []string{indexCertsOfCA + c.CAID + "/" + c.ID}
}

func (c *CACertificate) check() error {
	if _, err := checkCertID("CA certificate", c.ID); err != nil || c.ID != strings.ToLower(c.ID) {
		return fmt.Errorf("%w: CA certificate id %q", ErrInvalid, c.ID)
	}
	if c.Status != CAActive && c.Status != CAInactive {
		return fmt.Errorf("%w: CA status %q", ErrInvalid, c.Status)
	}
	if c.AutoRegistration != AutoRegistrationEnable && c.AutoRegistration != AutoRegistrationDisable {
		return fmt.Errorf("%w: CA auto-registration status %q", ErrInvalid, c.AutoRegistration)
	}
	for _, p := range c.Policies {
		if err := CheckPolicyName(p); err != nil {
			return err
		}
	}
	certs, err := pki.ParsePEM([]byte(c.PEM))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(certs) != 1 || pki.ID(certs[0].Raw) != c.ID {
		return fmt.Errorf("%w: the PEM of CA certificate %s is not that certificate", ErrInvalid, c.ID)
	}
	if c.SubjectHash != subjectHash(certs[0].RawSubject) || c.KeyID != hex.EncodeToString(certs[0].SubjectKeyId) {
		return fmt.Errorf("%w: CA certificate %s: subject hash or key id is not the certificate's", ErrInvalid, c.ID)
	}
	return nil
}

func (c *CACertificate) indexKeys() []string {
	keys := []string{indexCABySubject + c.SubjectHash + "/" + c.ID}
	if c.KeyID != "" {
		keys = append(keys, indexCAByKeyID+c.KeyID+"/"+c.ID)
	}
	return keys
}

// subjectHash returns the SHA-256 of a raw (DER) subject, hex.
func subjectHash(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

func (p *Policy) check() error {
	if err := CheckPolicyName(p.Name); err != nil {
		return err
	}
	return checkPolicyDocument(p.Document)
}

// checkPolicyDocument is what every policy document must be, whatever
// Options.CheckPolicy adds: a JSON object of at most MaxPolicyDocument
// characters without white space.
func checkPolicyDocument(doc []byte) error {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(doc, &obj); err != nil {
		return fmt.Errorf("%w: policy document is not a JSON object: %v", ErrInvalid, err)
	}
	if n := policySize(doc); n > MaxPolicyDocument {
		return fmt.Errorf("%w: policy document has %d characters without white space (at most %d)", ErrInvalid, n, MaxPolicyDocument)
	}
	return nil
}

func (p *Policy) indexKeys() []string { return nil }

func (t *Token) check() error {
	if len(t.ID) != 16 || !charset(t.ID, "") {
		return fmt.Errorf("%w: token id %q", ErrInvalid, t.ID)
	}
	if err := CheckTokenPrincipal(t.Principal); err != nil {
		return err
	}
	if _, ok := pki.NormalizeID(t.SecretHash); !ok {
		return fmt.Errorf("%w: token %s: secret hash %q", ErrInvalid, t.ID, t.SecretHash)
	}
	return nil
}

func (t *Token) indexKeys() []string {
	return []string{indexTokenByHash + t.SecretHash + "/" + t.ID, indexTokensOf + t.Principal + "/" + t.ID}
}

func (a *Attachment) check() error {
	p, err := CheckPrincipal(a.Principal)
	if err != nil {
		return err
	}
	if p != a.Principal {
		return fmt.Errorf("%w: principal %q is not in canonical form", ErrInvalid, a.Principal)
	}
	switch {
	case a.Thing != "" && a.Policy == "":
		return CheckThingName(a.Thing)
	case a.Policy != "" && a.Thing == "":
		return CheckPolicyName(a.Policy)
	}
	return fmt.Errorf("%w: an attachment names a policy or a thing", ErrInvalid)
}

func (a *Attachment) indexKeys() []string {
	if a.Thing != "" {
		return []string{indexPrincipalsOfThing + a.Thing + "/" + a.Principal}
	}
	return []string{indexPrincipalsOfPolicy + a.Policy + "/" + a.Principal}
}

// The view's index keys: "x" + a letter + "/" + what is looked up + "/"
// + the entity's id; their values are empty.
const (
	indexCertsOfCA          = "xc/"
	indexCABySubject        = "xs/"
	indexCAByKeyID          = "xk/"
	indexTokenByHash        = "xh/"
	indexTokensOf           = "xt/"
	indexPrincipalsOfPolicy = "xp/"
	indexPrincipalsOfThing  = "xn/"
)

// stamp sets e's version (one more than prev's, 1 without prev) and
// times.
func stamp(e Entity, prev Entity, now time.Time) {
	m := meta(e)
	m.Modified = now
	if prev == nil {
		m.Created = now
		m.Ver = 1
		return
	}
	m.Created = meta(prev).Created
	m.Ver = prev.Version() + 1
}

func meta(e Entity) *Meta {
	switch v := e.(type) {
	case *Thing:
		return &v.Meta
	case *Certificate:
		return &v.Meta
	case *CACertificate:
		return &v.Meta
	case *Policy:
		return &v.Meta
	case *Token:
		return &v.Meta
	case *Attachment:
		return &v.Meta
	}
	panic(fmt.Sprintf("registry: %T is not an entity", e))
}
