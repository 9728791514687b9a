// Package pki is iotpipe's certificate handling: its own CA (created on
// first start, issuing device and server certificates), the parsing and
// checks of certificates brought by users (device certificates and CA
// certificates for just-in-time registration), certificate ids, and the
// verification of a client's chain at TLS connect. It uses only the
// standard library (crypto/x509, crypto/ecdsa).
package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrInvalid is wrapped by every error about a certificate or PEM input
// that cannot be used (unparsable, expired, wrong kind).
var ErrInvalid = errors.New("invalid certificate")

// MaxPEMSize bounds PEM input, as AWS IoT bounds certificatePem (64 KiB).
const MaxPEMSize = 65536

// ID returns the certificate id of a DER certificate: the SHA-256 of the
// DER, 64 lower-case hex characters (AWS IoT's certificateId has this
// shape).
func ID(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// NormalizeID returns id in the form ID returns (lower case, without an
// optional 0x prefix, as AWS accepts) and whether it is one.
func NormalizeID(id string) (string, bool) {
	id = strings.TrimPrefix(strings.TrimPrefix(id, "0x"), "0X")
	if len(id) != 64 {
		return "", false
	}
	id = strings.ToLower(id)
	for i := 0; i < len(id); i++ {
		c := id[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	return id, true
}

// EncodePEM returns der as a PEM CERTIFICATE block.
func EncodePEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// ParsePEM returns the certificates of the CERTIFICATE blocks of data, in
// order. Text around the blocks is ignored (openssl writes some); any
// other block type, a block that does not parse, no block at all or more
// than MaxPEMSize bytes is an error wrapping ErrInvalid.
func ParsePEM(data []byte) ([]*x509.Certificate, error) {
	if len(data) > MaxPEMSize {
		return nil, fmt.Errorf("%w: PEM input of %d bytes (at most %d)", ErrInvalid, len(data), MaxPEMSize)
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%w: PEM block %d is %q, not CERTIFICATE", ErrInvalid, len(certs)+1, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: PEM block %d: %v", ErrInvalid, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%w: no PEM CERTIFICATE block", ErrInvalid)
	}
	return certs, nil
}

// ParseDevicePEM parses a device (client) certificate brought by a user:
// exactly one CERTIFICATE block, not a CA certificate, valid at now
// (expired or not yet valid is refused) and usable for TLS client
// authentication (see CheckClient).
func ParseDevicePEM(data []byte, now time.Time) (*x509.Certificate, error) {
	c, err := parseOne(data, "device")
	if err != nil {
		return nil, err
	}
	if c.IsCA {
		return nil, fmt.Errorf("%w: %s is a CA certificate (register it as a CA)", ErrInvalid, describe(c))
	}
	if err := CheckClient(c, now); err != nil {
		return nil, err
	}
	return c, nil
}

// ParseCAPEM parses a CA certificate to register for just-in-time
// registration: exactly one CERTIFICATE block with the CA basic
// constraint, allowed to sign certificates when it has a key usage, and
// valid at now.
func ParseCAPEM(data []byte, now time.Time) (*x509.Certificate, error) {
	c, err := parseOne(data, "CA")
	if err != nil {
		return nil, err
	}
	if !c.BasicConstraintsValid || !c.IsCA {
		return nil, fmt.Errorf("%w: %s is not a CA certificate (no CA basic constraint)", ErrInvalid, describe(c))
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: %s may not sign certificates (key usage without certSign)", ErrInvalid, describe(c))
	}
	if err := checkValidity(c, now); err != nil {
		return nil, err
	}
	return c, nil
}

// parseOne parses PEM input that must hold exactly one certificate
// (a what certificate).
func parseOne(data []byte, what string) (*x509.Certificate, error) {
	certs, err := ParsePEM(data)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("%w: %d certificates in the PEM input, expected one %s certificate", ErrInvalid, len(certs), what)
	}
	return certs[0], nil
}

// CheckClient checks what a device certificate needs at a TLS connect,
// whoever issued it: valid at now, and if it names extended key usages,
// one of them is client authentication (or any).
func CheckClient(c *x509.Certificate, now time.Time) error {
	if err := checkValidity(c, now); err != nil {
		return err
	}
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return nil
	}
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is not for client authentication (extended key usage)", ErrInvalid, describe(c))
}

func checkValidity(c *x509.Certificate, now time.Time) error {
	if now.After(c.NotAfter) {
		return fmt.Errorf("%w: %s expired at %s", ErrInvalid, describe(c), c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("%w: %s is not valid before %s", ErrInvalid, describe(c), c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// describe names c in errors: its subject's common name (or whole
// subject) and the start of its id.
func describe(c *x509.Certificate) string {
	name := c.Subject.CommonName
	if name == "" {
		name = c.Subject.String()
	}
	return fmt.Sprintf("certificate %q (id %.12s…)", name, ID(c.Raw))
}
