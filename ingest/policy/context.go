package policy

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// Context is what a connection brings to its policies: the values of the
// policy variables and condition keys. Fields left empty are absent: a
// variable naming them cannot be resolved and makes its statement match
// nothing.
type Context struct {
	// ClientID is the MQTT client id: ${iot:ClientId}.
	ClientID string
	// Thing is the registry thing the connection is attached to, nil when
	// none: ${iot:Connection.Thing.*}. iot:Connection.Thing.IsAttached is
	// "true" exactly when Thing is set.
	Thing *Thing
	// Certificate is the client certificate's fields, nil when the
	// connection has none: ${iot:Certificate.*}.
	Certificate *Certificate
	// SourceIP is the client's address: aws:SourceIp.
	SourceIP netip.Addr
}

// Thing is a registry thing as the policy variables see it.
type Thing struct {
	// Name is ${iot:Connection.Thing.ThingName}.
	Name string
	// TypeName is ${iot:Connection.Thing.ThingTypeName}; empty when the
	// thing has no type.
	TypeName string
	// Attributes are ${iot:Connection.Thing.Attributes[name]}.
	Attributes map[string]string
}

// Certificate holds the X.509 fields AWS IoT Core exposes as
// iot:Certificate.* variables. CertificateFromX509 fills it from a parsed
// certificate.
type Certificate struct {
	// SerialNumber is the serial number in decimal, as AWS writes it:
	// ${iot:Certificate.SerialNumber}.
	SerialNumber string
	// Subject and Issuer hold the distinguished name's attributes by AWS's
	// names (CommonName, Organization, OrganizationalUnit, Country, State,
	// SerialNumber, Title, Surname, GivenName, Initials, Pseudonym,
	// GenerationQualifier, DistinguishedNameQualifier), in certificate order.
	Subject, Issuer Names
	// SubjectAltName and IssuerAltName hold the alternative names by AWS's
	// names (DNSName, RFC822Name, IPAddress, UniformResourceIdentifier,
	// DirectoryName).
	SubjectAltName, IssuerAltName Names
}

// Names maps an attribute name to its values, first value first.
// ${iot:Certificate.Subject.Organization} is the first value,
// ...Organization.1 the second, ...Organization.List all of them (for
// ForAnyValue/ForAllValues conditions). AWS reads at most five values of an
// attribute; so does iotpipe.
type Names map[string][]string

// maxCertValues and maxCertValueLen are AWS's limits on certificate
// variables: five values an attribute, 1024 characters a value.
const (
	maxCertValues   = 5
	maxCertValueLen = 1024
)

// dnAttributes are the distinguished-name attributes AWS IoT exposes, by
// lower-case name.
var dnAttributes = canonicalNames(
	"CommonName", "Country", "DistinguishedNameQualifier", "GenerationQualifier",
	"GivenName", "Initials", "Organization", "OrganizationalUnit", "Pseudonym",
	"SerialNumber", "State", "Surname", "Title",
)

// altNameKinds are the alternative-name kinds AWS IoT exposes.
var altNameKinds = canonicalNames(
	"DNSName", "DirectoryName", "IPAddress", "RFC822Name", "UniformResourceIdentifier",
)

func canonicalNames(names ...string) map[string]string {
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[strings.ToLower(n)] = n
	}
	return m
}

// key is a parsed policy variable or condition key name.
type key struct {
	kind  keyKind
	arg   string // thing attribute, DN attribute or alt-name kind
	index int    // .N of a certificate attribute: the (N+1)th value
	list  bool   // .List: every value (multi-valued)
	name  string // as written
}

type keyKind uint8

const (
	keyUnknown keyKind = iota
	keyClientID
	keySourceIP
	keyThingName
	keyThingType
	keyThingAttribute
	keyIsAttached
	keyCertSerial
	keyCertAvailableKeys
	keyCertSubject
	keyCertIssuer
	keyCertSubjectAlt
	keyCertIssuerAlt
)

// parseKey reads a variable or condition key name. Names are
// case-insensitive as in IAM, except a thing attribute's name. A name
// iotpipe does not know is kept: it is never present.
func parseKey(name string) key {
	k := key{name: name}
	lower := strings.ToLower(name)
	switch lower {
	case "iot:clientid":
		k.kind = keyClientID
	case "aws:sourceip":
		k.kind = keySourceIP
	case "iot:connection.thing.thingname":
		k.kind = keyThingName
	case "iot:connection.thing.thingtypename":
		k.kind = keyThingType
	case "iot:connection.thing.isattached":
		k.kind = keyIsAttached
	case "iot:certificate.serialnumber":
		k.kind = keyCertSerial
	case "iot:certificate.availablekeys":
		k.kind, k.list = keyCertAvailableKeys, true
	}
	if k.kind != keyUnknown {
		return k
	}
	const attrPrefix = "iot:connection.thing.attributes["
	if strings.HasPrefix(lower, attrPrefix) && strings.HasSuffix(name, "]") && len(name) > len(attrPrefix)+1 {
		k.kind, k.arg = keyThingAttribute, name[len(attrPrefix):len(name)-1]
		return k
	}
	for _, c := range []struct {
		prefix string
		kind   keyKind
		names  map[string]string
	}{
		{"iot:certificate.subject.alternativename.", keyCertSubjectAlt, altNameKinds},
		{"iot:certificate.issuer.alternativename.", keyCertIssuerAlt, altNameKinds},
		{"iot:certificate.subject.", keyCertSubject, dnAttributes},
		{"iot:certificate.issuer.", keyCertIssuer, dnAttributes},
	} {
		rest, found := strings.CutPrefix(lower, c.prefix)
		if !found {
			continue
		}
		attr, suffix, _ := strings.Cut(rest, ".")
		canon, known := c.names[attr]
		if !known {
			return k
		}
		switch {
		case suffix == "":
		case suffix == "list":
			k.list = true
		default:
			n, err := strconv.Atoi(suffix)
			if err != nil || n < 0 || suffix[0] == '+' {
				return k
			}
			k.index = n
		}
		k.kind, k.arg = c.kind, canon
		return k
	}
	return k
}

// known reports whether iotpipe can ever give k a value.
func (k key) known() bool { return k.kind != keyUnknown }

// resolver answers variables and condition keys from one Context.
type resolver struct {
	c *Context
}

// values returns k's values: one for a single-valued key, all for a .List
// key; none when k is absent. An empty string is absent, as in IAM.
func (r *resolver) values(k key) []string {
	switch k.kind {
	case keyCertAvailableKeys:
		return r.availableKeys()
	case keyCertSubject, keyCertIssuer, keyCertSubjectAlt, keyCertIssuerAlt:
		vals := r.certValues(k)
		if k.list {
			return vals
		}
		if k.index < len(vals) {
			return vals[k.index : k.index+1]
		}
		return nil
	}
	if v, ok := r.single(k); ok {
		return []string{v}
	}
	return nil
}

// single returns the value of a single-valued key.
func (r *resolver) single(k key) (string, bool) {
	c := r.c
	var v string
	switch k.kind {
	case keyClientID:
		v = c.ClientID
	case keySourceIP:
		if c.SourceIP.IsValid() {
			v = c.SourceIP.String()
		}
	case keyThingName:
		if c.Thing != nil {
			v = c.Thing.Name
		}
	case keyThingType:
		if c.Thing != nil {
			v = c.Thing.TypeName
		}
	case keyThingAttribute:
		if c.Thing != nil {
			v = c.Thing.Attributes[k.arg]
		}
	case keyIsAttached:
		return strconv.FormatBool(c.Thing != nil), true
	case keyCertSerial:
		if c.Certificate != nil {
			v = c.Certificate.SerialNumber
		}
	case keyCertSubject, keyCertIssuer, keyCertSubjectAlt, keyCertIssuerAlt:
		if k.list {
			return "", false
		}
		vals := r.certValues(k)
		if k.index < len(vals) {
			v = vals[k.index]
		}
	}
	return v, v != ""
}

// substitute returns the text a ${variable} becomes. Multi-valued keys are
// never substituted, and a certificate value holding a wildcard character
// (* $ + ? #) or longer than 1024 characters is not either, as in AWS.
func (r *resolver) substitute(k key) (string, bool) {
	v, ok := r.single(k)
	if !ok {
		return "", false
	}
	switch k.kind {
	case keyCertSerial, keyCertSubject, keyCertIssuer, keyCertSubjectAlt, keyCertIssuerAlt:
		if len(v) > maxCertValueLen || strings.ContainsAny(v, "*$+?#") {
			return "", false
		}
	}
	return v, true
}

// certValues returns the non-empty values of a certificate attribute, at
// most five.
func (r *resolver) certValues(k key) []string {
	cert := r.c.Certificate
	if cert == nil {
		return nil
	}
	var names Names
	switch k.kind {
	case keyCertSubject:
		names = cert.Subject
	case keyCertIssuer:
		names = cert.Issuer
	case keyCertSubjectAlt:
		names = cert.SubjectAltName
	case keyCertIssuerAlt:
		names = cert.IssuerAltName
	}
	vals := names[k.arg]
	if len(vals) > maxCertValues {
		vals = vals[:maxCertValues]
	}
	for _, v := range vals {
		if v == "" {
			return nonEmpty(vals)
		}
	}
	return vals
}

func nonEmpty(vals []string) []string {
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// availableKeys lists the certificate variables that have a value
// (iot:Certificate.AvailableKeys), sorted.
func (r *resolver) availableKeys() []string {
	cert := r.c.Certificate
	if cert == nil {
		return nil
	}
	var out []string
	if cert.SerialNumber != "" {
		out = append(out, "iot:Certificate.SerialNumber")
	}
	for _, g := range []struct {
		prefix string
		names  Names
		kind   keyKind
	}{
		{"iot:Certificate.Subject.", cert.Subject, keyCertSubject},
		{"iot:Certificate.Issuer.", cert.Issuer, keyCertIssuer},
		{"iot:Certificate.Subject.AlternativeName.", cert.SubjectAltName, keyCertSubjectAlt},
		{"iot:Certificate.Issuer.AlternativeName.", cert.IssuerAltName, keyCertIssuerAlt},
	} {
		for attr := range g.names {
			canon := dnAttributes[strings.ToLower(attr)]
			if g.kind == keyCertSubjectAlt || g.kind == keyCertIssuerAlt {
				canon = altNameKinds[strings.ToLower(attr)]
			}
			if canon != attr || len(r.certValues(key{kind: g.kind, arg: attr})) == 0 {
				continue
			}
			out = append(out, g.prefix+attr)
		}
	}
	sort.Strings(out)
	return out
}
