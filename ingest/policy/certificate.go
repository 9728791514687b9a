package policy

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/netip"
)

// dnAttributeOIDs names the distinguished-name attributes AWS IoT exposes.
var dnAttributeOIDs = map[string]string{
	"2.5.4.3":  "CommonName",
	"2.5.4.4":  "Surname",
	"2.5.4.5":  "SerialNumber",
	"2.5.4.6":  "Country",
	"2.5.4.8":  "State",
	"2.5.4.10": "Organization",
	"2.5.4.11": "OrganizationalUnit",
	"2.5.4.12": "Title",
	"2.5.4.42": "GivenName",
	"2.5.4.43": "Initials",
	"2.5.4.44": "GenerationQualifier",
	"2.5.4.46": "DistinguishedNameQualifier",
	"2.5.4.65": "Pseudonym",
}

var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidIssuerAltName  = asn1.ObjectIdentifier{2, 5, 29, 18}
)

// CertificateFromX509 returns the iot:Certificate.* variables of a client
// certificate as AWS IoT Core fills them: the serial number in decimal, the
// subject's and issuer's attributes and both alternative names in
// certificate order (a DirectoryName as RFC 4514 text). It fails when an
// alternative-name extension cannot be read.
func CertificateFromX509(cert *x509.Certificate) (*Certificate, error) {
	c := &Certificate{
		Subject: dnNames(cert.Subject),
		Issuer:  dnNames(cert.Issuer),
	}
	if cert.SerialNumber != nil {
		c.SerialNumber = cert.SerialNumber.String()
	}
	for _, ext := range cert.Extensions {
		var dst *Names
		var what string
		switch {
		case ext.Id.Equal(oidSubjectAltName):
			dst, what = &c.SubjectAltName, "subject alternative name"
		case ext.Id.Equal(oidIssuerAltName):
			dst, what = &c.IssuerAltName, "issuer alternative name"
		default:
			continue
		}
		names, err := generalNames(ext.Value)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %s: %w", c.SerialNumber, what, err)
		}
		*dst = names
	}
	return c, nil
}

// dnNames collects the attributes AWS IoT exposes from a distinguished
// name, in certificate order.
func dnNames(n pkix.Name) Names {
	out := Names{}
	for _, atv := range n.Names {
		attr, ok := dnAttributeOIDs[atv.Type.String()]
		if !ok {
			continue
		}
		if s, ok := atv.Value.(string); ok {
			out[attr] = append(out[attr], s)
		}
	}
	return out
}

// generalNames reads a GeneralNames sequence (RFC 5280 4.2.1.6): the
// rfc822Name, dNSName, directoryName, uniformResourceIdentifier and
// iPAddress entries, by AWS's names. Other kinds are skipped.
func generalNames(der []byte) (Names, error) {
	var seq asn1.RawValue
	// Bytes after the sequence are ignored, as crypto/x509 does.
	rest, err := asn1.Unmarshal(der, &seq)
	if err != nil {
		return nil, err
	}
	if seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence || !seq.IsCompound {
		return nil, errors.New("not a sequence of names")
	}
	out := Names{}
	for rest = seq.Bytes; len(rest) > 0; {
		var v asn1.RawValue
		if rest, err = asn1.Unmarshal(rest, &v); err != nil {
			return nil, err
		}
		if v.Class != asn1.ClassContextSpecific || v.IsCompound != (v.Tag == 4) {
			continue // not a kind AWS reads, skipped as crypto/x509 does
		}
		switch v.Tag {
		case 1:
			out["RFC822Name"] = append(out["RFC822Name"], string(v.Bytes))
		case 2:
			out["DNSName"] = append(out["DNSName"], string(v.Bytes))
		case 4:
			var rdn pkix.RDNSequence
			inner, err := asn1.Unmarshal(v.Bytes, &rdn)
			if err != nil {
				return nil, fmt.Errorf("directory name: %w", err)
			}
			if len(inner) > 0 {
				return nil, errors.New("directory name: trailing data")
			}
			out["DirectoryName"] = append(out["DirectoryName"], rdn.String())
		case 6:
			out["UniformResourceIdentifier"] = append(out["UniformResourceIdentifier"], string(v.Bytes))
		case 7:
			ip, ok := netip.AddrFromSlice(v.Bytes)
			if !ok {
				return nil, fmt.Errorf("IP address of %d bytes", len(v.Bytes))
			}
			out["IPAddress"] = append(out["IPAddress"], ip.Unmap().String())
		}
	}
	return out, nil
}
