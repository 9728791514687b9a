package pki

import (
	"crypto/x509"
	"fmt"
	"time"
)

// VerifyChain checks that leaf chains to ca, a registered CA certificate
// (a root or an intermediate: it is the trust anchor either way),
// directly or through the intermediates the client presented, at now
// and for TLS client authentication (crypto/x509's checks: signatures,
// validity of every certificate, basic constraints, path length, name
// constraints, extended key usage).
func VerifyChain(leaf *x509.Certificate, intermediates []*x509.Certificate, ca *x509.Certificate, now time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range intermediates {
		if !c.Equal(ca) && !c.Equal(leaf) {
			inter.AddCert(c)
		}
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("%w: %s does not chain to CA %q (id %.12s…): %v", ErrInvalid, describe(leaf), ca.Subject.CommonName, ID(ca.Raw), err)
	}
	return nil
}

// Issuer names the certificate that signed c, as far as c says: the
// raw subject of the issuer and its key id (the authority key
// identifier; nil when c has none). A registry finds the candidate CA
// certificates with it before VerifyChain decides.
type Issuer struct {
	// RawSubject is c's RawIssuer (DER).
	RawSubject []byte
	// KeyID is c's AuthorityKeyId.
	KeyID []byte
}

// IssuerOf returns what c says of its issuer.
func IssuerOf(c *x509.Certificate) Issuer {
	return Issuer{RawSubject: c.RawIssuer, KeyID: c.AuthorityKeyId}
}
