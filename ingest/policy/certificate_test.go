package policy_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/iotpipe/iotpipe/ingest/policy"
)

var (
	oidSAN = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidIAN = asn1.ObjectIdentifier{2, 5, 29, 18}
)

// generalName is one entry of a GeneralNames extension: its context tag
// (1 email, 2 DNS, 4 directory name, 6 URI, 7 IP) and content.
type generalName struct {
	tag   int
	bytes []byte
}

func dirName(t testing.TB, n pkix.Name) generalName {
	der, err := asn1.Marshal(n.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	return generalName{4, der}
}

func generalNamesDER(t testing.TB, names ...generalName) []byte {
	vals := make([]asn1.RawValue, len(names))
	for i, n := range names {
		vals[i] = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: n.tag, IsCompound: n.tag == 4, Bytes: n.bytes}
	}
	der, err := asn1.Marshal(vals)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// issue signs a certificate for tmpl with a fresh issuer named issuer.
func issue(t testing.TB, tmpl *x509.Certificate, issuer pkix.Name) *x509.Certificate {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	parent := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: issuer, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	tmpl.NotBefore, tmpl.NotAfter = time.Now(), time.Now().Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// awsExampleCertificate is the certificate of AWS's "Using X.509
// certificate policy variables" page, with a second organization.
func awsExampleCertificate(t testing.TB) *x509.Certificate {
	serial, _ := new(big.Int).SetString("921285cbb7a5e086", 16)
	ext := func(oid asn1.ObjectIdentifier, names ...generalName) pkix.Extension {
		return pkix.Extension{Id: oid, Value: generalNamesDER(t, names...)}
	}
	attr := func(oid asn1.ObjectIdentifier, v string) pkix.AttributeTypeAndValue {
		return pkix.AttributeTypeAndValue{Type: oid, Value: v}
	}
	subject := pkix.Name{
		Country: []string{"US"}, Organization: []string{"IoT Devices"}, OrganizationalUnit: []string{"LightBulb"},
		Province: []string{"NY"}, Locality: []string{"Brooklyn"}, CommonName: "LightBulb Device Cert", SerialNumber: "123",
		ExtraNames: []pkix.AttributeTypeAndValue{
			attr(asn1.ObjectIdentifier{2, 5, 4, 42}, "Bulb"),
			attr(asn1.ObjectIdentifier{2, 5, 4, 43}, "ZZ"),
			attr(asn1.ObjectIdentifier{2, 5, 4, 46}, "Bulb001"),
			attr(asn1.ObjectIdentifier{2, 5, 4, 4}, "Multi Color"),
			attr(asn1.ObjectIdentifier{2, 5, 4, 12}, "RGB"),
			attr(asn1.ObjectIdentifier{2, 5, 4, 65}, "RGB Device"),
			attr(asn1.ObjectIdentifier{2, 5, 4, 44}, "4"),
		},
	}
	// A second organization in an RDN of its own, so that it comes second
	// (two values in one RDN are a DER SET, sorted by encoding).
	rdns := append(subject.ToRDNSequence(), pkix.RelativeDistinguishedNameSET{attr(asn1.ObjectIdentifier{2, 5, 4, 10}, "Second Org")})
	rawSubject, err := asn1.Marshal(rdns)
	if err != nil {
		t.Fatal(err)
	}
	return issue(t, &x509.Certificate{
		SerialNumber: serial,
		RawSubject:   rawSubject,
		ExtraExtensions: []pkix.Extension{
			ext(oidSAN, generalName{2, []byte("example.com")}, generalName{7, []byte{1, 2, 3, 4}},
				generalName{6, []byte("ResourceIdentifier001")}, generalName{1, []byte("device1@example.com")},
				dirName(t, pkix.Name{Country: []string{"US"}, Organization: []string{"IoT"}, OrganizationalUnit: []string{"SmartHome"}, CommonName: "LightBulbCert"})),
			ext(oidIAN, generalName{2, []byte("issuer.com")}, generalName{7, net.ParseIP("2001:db8::5")},
				generalName{6, []byte("PrimarySignerCA")}, generalName{1, []byte("primary@issuer.com")}),
		},
	}, pkix.Name{Country: []string{"US"}, Organization: []string{"IoT Devices"}, CommonName: "IoT Devices Primary CA"})
}

func TestCertificateFromX509(t *testing.T) {
	got, err := policy.CertificateFromX509(awsExampleCertificate(t))
	if err != nil {
		t.Fatal(err)
	}
	want := &policy.Certificate{
		SerialNumber: "10525622389124227206", // AWS's own example: 92:12:85:cb:b7:a5:e0:86
		Subject: policy.Names{
			"Country": {"US"}, "State": {"NY"}, "Organization": {"IoT Devices", "Second Org"},
			"OrganizationalUnit": {"LightBulb"}, "CommonName": {"LightBulb Device Cert"}, "SerialNumber": {"123"},
			"GivenName": {"Bulb"}, "Initials": {"ZZ"}, "DistinguishedNameQualifier": {"Bulb001"},
			"Surname": {"Multi Color"}, "Title": {"RGB"}, "Pseudonym": {"RGB Device"}, "GenerationQualifier": {"4"},
		},
		Issuer: policy.Names{"Country": {"US"}, "Organization": {"IoT Devices"}, "CommonName": {"IoT Devices Primary CA"}},
		SubjectAltName: policy.Names{
			"DNSName": {"example.com"}, "IPAddress": {"1.2.3.4"}, "UniformResourceIdentifier": {"ResourceIdentifier001"},
			"RFC822Name": {"device1@example.com"}, "DirectoryName": {"CN=LightBulbCert,OU=SmartHome,O=IoT,C=US"},
		},
		IssuerAltName: policy.Names{
			"DNSName": {"issuer.com"}, "IPAddress": {"2001:db8::5"}, "UniformResourceIdentifier": {"PrimarySignerCA"},
			"RFC822Name": {"primary@issuer.com"},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CertificateFromX509 (-want +got):\n%s", diff)
	}

	// The same fields through policies: variables and conditions.
	p, err := policy.Parse("cert", []byte(`{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"iot:Publish","Resource":[
			"topic/${iot:Certificate.Subject.AlternativeName.DNSName}/${iot:Certificate.Issuer.AlternativeName.IPAddress}",
			"topic/org/${iot:Certificate.Subject.Organization.1}"],
		 "Condition":{"ForAllValues:StringLike":{"iot:Certificate.Subject.Organization.List":["IoT *","Second *"]},
		              "StringEquals":{"iot:Certificate.Issuer.CommonName":"IoT Devices Primary CA"}}}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d := policy.Compile([]*policy.Policy{p}, policy.Context{ClientID: "bulb", Certificate: got})
	for topic, want := range map[string]bool{"example.com/2001:db8::5": true, "org/Second Org": true, "org/IoT Devices": false} {
		if d.AllowPublish(topic, false) != want {
			t.Errorf("publish %s: want %v (skipped %q)", topic, want, d.Skipped())
		}
	}
}

func TestCertificateFromX509Errors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value []byte
		want  string
	}{
		{"not DER", []byte{0x30, 0x05, 0x82}, "issuer alternative name"},
		{"not a sequence", []byte{0x04, 0x00}, "not a sequence of names"},
		{"IP of 3 bytes", generalNamesDER(t, generalName{7, []byte{1, 2, 3}}), "IP address of 3 bytes"},
		{"bad directory name", generalNamesDER(t, generalName{4, []byte{0x02, 0x01, 0x00}}), "directory name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := issue(t, &x509.Certificate{SerialNumber: big.NewInt(7), ExtraExtensions: []pkix.Extension{{Id: oidIAN, Value: tc.value}}}, pkix.Name{CommonName: "ca"})
			_, err := policy.CertificateFromX509(cert)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "certificate 7: issuer alternative name: ") {
				t.Errorf("error %q does not name the certificate and extension", err)
			}
		})
	}
}

// FuzzGeneralNames feeds subject-alternative-name extensions to
// CertificateFromX509; where crypto/x509 reads the same extension, both
// must find the same DNS names, emails, URIs and IP addresses, and only a
// directory name (which crypto/x509 skips) may make CertificateFromX509
// fail.
func FuzzGeneralNames(f *testing.F) {
	f.Add(generalNamesDER(f, generalName{2, []byte("example.com")}, generalName{7, []byte{1, 2, 3, 4}},
		generalName{6, []byte("urn:x")}, generalName{1, []byte("a@b.c")}))
	f.Add(generalNamesDER(f, dirName(f, pkix.Name{CommonName: "x", Organization: []string{"o"}}), generalName{7, net.ParseIP("::1")}))
	f.Add([]byte{0x30, 0x00})
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	parent := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	f.Fuzz(func(t *testing.T, value []byte) {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: parent.NotBefore, NotAfter: parent.NotAfter,
			ExtraExtensions: []pkix.Extension{{Id: oidSAN, Value: value}}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
		if err != nil {
			return
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return // crypto/x509 refuses this extension; nothing to compare
		}
		got, err := policy.CertificateFromX509(cert)
		if err != nil {
			if strings.Contains(err.Error(), "directory name") {
				return // crypto/x509 does not read directory names
			}
			t.Fatalf("crypto/x509 reads %x, CertificateFromX509 fails: %v", value, err)
		}
		var uris, ips []string
		for _, u := range cert.URIs {
			uris = append(uris, u.String())
		}
		for _, ip := range cert.IPAddresses {
			a, _ := netip.AddrFromSlice(ip)
			ips = append(ips, a.Unmap().String())
		}
		san := got.SubjectAltName
		var ours []string // as crypto/x509 prints the URIs it parsed
		for _, s := range san["UniformResourceIdentifier"] {
			u, err := url.Parse(s)
			if err != nil {
				t.Fatalf("URI %q: %v", s, err)
			}
			ours = append(ours, u.String())
		}
		if !slices.Equal(ours, uris) {
			t.Fatalf("UniformResourceIdentifier: CertificateFromX509 %q, crypto/x509 %q", san["UniformResourceIdentifier"], uris)
		}
		for _, c := range []struct {
			kind string
			want []string
		}{{"DNSName", cert.DNSNames}, {"RFC822Name", cert.EmailAddresses}, {"IPAddress", ips}} {
			if !slices.Equal(san[c.kind], c.want) {
				t.Fatalf("%s: CertificateFromX509 %q, crypto/x509 %q", c.kind, san[c.kind], c.want)
			}
		}
	})
}
