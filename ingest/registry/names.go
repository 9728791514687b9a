package registry

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/iotpipe/iotpipe/ingest/pki"
)

// AWS IoT's limits on names and attributes.
const (
	// MaxNameLength bounds thing, thing type, policy and token principal
	// names, and attribute names.
	MaxNameLength = 128
	// MaxAttributeValueLength bounds an attribute value.
	MaxAttributeValueLength = 800
	// MaxAttributes bounds a thing's attributes (AWS's limit for a thing
	// with a type; iotpipe has no thing types to register, so it applies
	// to every thing).
	MaxAttributes = 50
	// MaxPolicyDocument bounds a policy document, white space excluded.
	MaxPolicyDocument = 2048
)

// charset reports whether every byte of s is an ASCII letter or digit or
// one of extra.
func charset(s, extra string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(extra, c) >= 0) {
			continue
		}
		return false
	}
	return true
}

func checkName(what, name, extra, pattern string) error {
	if name == "" || len(name) > MaxNameLength || !charset(name, extra) {
		return fmt.Errorf("%w: %s %q: 1 to %d characters of %s", ErrInvalid, what, name, MaxNameLength, pattern)
	}
	return nil
}

// CheckThingName checks a thing name: 1 to 128 characters of
// [a-zA-Z0-9:_-] (AWS's rule). A thing type name follows the same rule.
func CheckThingName(name string) error {
	return checkName("thing name", name, ":_-", "[a-zA-Z0-9:_-]")
}

// CheckThingTypeName checks a thing type name (the thing name's rule).
func CheckThingTypeName(name string) error {
	return checkName("thing type name", name, ":_-", "[a-zA-Z0-9:_-]")
}

// CheckPolicyName checks a policy name: 1 to 128 characters of
// [\w+=,.@-] (AWS's rule).
func CheckPolicyName(name string) error {
	return checkName("policy name", name, "_+=,.@-", `[\w+=,.@-]`)
}

// CheckAttributes checks a thing's attributes: at most MaxAttributes,
// names of 1 to 128 characters of [a-zA-Z0-9_.,@/:#-], values of at
// most 800 characters of [a-zA-Z0-9_.,@/:#=[]-] (AWS's rules).
func CheckAttributes(attrs map[string]string) error {
	if len(attrs) > MaxAttributes {
		return fmt.Errorf("%w: %d attributes (at most %d)", ErrInvalid, len(attrs), MaxAttributes)
	}
	for k, v := range attrs {
		if err := checkName("attribute name", k, "_.,@/:#-", "[a-zA-Z0-9_.,@/:#-]"); err != nil {
			return err
		}
		if len(v) > MaxAttributeValueLength || !charset(v, "_.,@/:#=[]-") {
			return fmt.Errorf("%w: attribute %s value %q: at most %d characters of [a-zA-Z0-9_.,@/:#=[]-]", ErrInvalid, k, v, MaxAttributeValueLength)
		}
	}
	return nil
}

// CheckPrincipal checks a principal: a certificate id (64 hex
// characters) or a token principal (see CheckTokenPrincipal). It
// returns the principal in canonical form (certificate ids lower case).
func CheckPrincipal(p string) (string, error) {
	if id, ok := pki.NormalizeID(p); ok {
		return id, nil
	}
	if err := CheckTokenPrincipal(p); err != nil {
		return "", fmt.Errorf("%w: principal %q: a certificate id (64 hex characters) or a token principal (1 to %d letters and digits)", ErrInvalid, p, MaxNameLength)
	}
	return p, nil
}

// CheckTokenPrincipal checks the principal name of a token: 1 to 128
// ASCII letters and digits (the rule of a custom authorizer's
// principalId), and not 64 hex characters, which name certificates.
func CheckTokenPrincipal(p string) error {
	if err := checkName("token principal", p, "", "[a-zA-Z0-9]"); err != nil {
		return err
	}
	if _, ok := pki.NormalizeID(p); ok {
		return fmt.Errorf("%w: token principal %q: 64 hex characters name a certificate", ErrInvalid, p)
	}
	return nil
}

// checkCertID returns id normalized, or an error naming what.
func checkCertID(what, id string) (string, error) {
	n, ok := pki.NormalizeID(id)
	if !ok {
		return "", fmt.Errorf("%w: %s id %q: 64 hex characters", ErrInvalid, what, id)
	}
	return n, nil
}

// policySize is the length of doc without white space, as AWS counts it.
func policySize(doc []byte) int {
	n := 0
	for _, r := range string(doc) {
		if !unicode.IsSpace(r) {
			n++
		}
	}
	return n
}
