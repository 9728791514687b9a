package policy_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/iotpipe/iotpipe/ingest/policy"
)

// connection is the context of the condition and variable tables: a
// certificate with two organizations, attached to thing gh-1.
func connection() policy.Context {
	return policy.Context{
		ClientID: "c1",
		Thing: &policy.Thing{Name: "gh-1", TypeName: "sensor", Attributes: map[string]string{
			"n": "10", "word": "x", "since": "2024-01-01T00:00:00Z", "epoch": "1700000000",
			"arn": "arn:aws:iot:us-east-1:123456789012:thing/gh-1", "b64": "aGVsbG8=",
		}},
		Certificate: &policy.Certificate{
			SerialNumber: "10525622389124227206",
			Subject: policy.Names{
				"CommonName":   {"gh-1"},
				"Organization": {"Example Corp", "Other"},
			},
			Issuer:         policy.Names{"CommonName": {"iotpipe CA"}},
			SubjectAltName: policy.Names{"DNSName": {"gh-1.example.com", "alt.example.com"}},
		},
		SourceIP: netip.MustParseAddr("10.1.2.3"),
	}
}

func detached() policy.Context {
	c := connection()
	c.Thing = nil
	return c
}

func noCertificate() policy.Context {
	c := connection()
	c.Certificate = nil
	return c
}

// TestConditions: IAM's condition semantics over AWS IoT's keys, each
// decided for iot:Connect on client/c1 by an Allow carrying the condition.
func TestConditions(t *testing.T) {
	for _, tc := range []struct {
		name      string
		condition string
		ctx       policy.Context
		want      bool
	}{
		{"StringEquals matches", `{"StringEquals":{"iot:ClientId":"c1"}}`, connection(), true},
		{"StringEquals is case-sensitive", `{"StringEquals":{"iot:ClientId":"C1"}}`, connection(), false},
		{"StringEqualsIgnoreCase", `{"StringEqualsIgnoreCase":{"iot:ClientId":"C1"}}`, connection(), true},
		{"values of one key are ORed", `{"StringEquals":{"iot:ClientId":["c0","c1"]}}`, connection(), true},
		{"StringNotEquals another", `{"StringNotEquals":{"iot:ClientId":"c2"}}`, connection(), true},
		{"StringNotEquals itself", `{"StringNotEquals":{"iot:ClientId":"c1"}}`, connection(), false},
		{"StringNotEquals list is none of them", `{"StringNotEquals":{"iot:ClientId":["c2","c1"]}}`, connection(), false},
		{"StringNotEqualsIgnoreCase", `{"StringNotEqualsIgnoreCase":{"iot:ClientId":"C1"}}`, connection(), false},
		{"StringLike star", `{"StringLike":{"iot:ClientId":"c*"}}`, connection(), true},
		{"StringLike question", `{"StringLike":{"iot:ClientId":"c?"}}`, connection(), true},
		{"StringLike no match", `{"StringLike":{"iot:ClientId":"d*"}}`, connection(), false},
		{"StringNotLike", `{"StringNotLike":{"iot:ClientId":"d*"}}`, connection(), true},
		{"StringEquals star is literal", `{"StringEquals":{"iot:ClientId":"c*"}}`, connection(), false},
		{"keys of one operator are ANDed", `{"StringEquals":{"iot:ClientId":"c1","iot:Connection.Thing.ThingName":"gh-2"}}`, connection(), false},
		{"operators are ANDed", `{"StringEquals":{"iot:ClientId":"c1"},"StringLike":{"iot:Connection.Thing.ThingName":"gh-*"}}`, connection(), true},
		{"key names are case-insensitive", `{"StringEquals":{"IOT:clientid":"c1"}}`, connection(), true},
		{"operator names are case-insensitive", `{"stringequals":{"iot:ClientId":"c1"}}`, connection(), true},
		{"a variable in a value", `{"StringEquals":{"iot:Certificate.Subject.CommonName":"${iot:Connection.Thing.ThingName}"}}`, connection(), true},
		{"an unresolved variable in a value drops the statement", `{"StringNotEquals":{"iot:ClientId":"${iot:Connection.Thing.ThingName}"}}`, detached(), false},

		{"absent key, positive operator", `{"StringEquals":{"iot:Connection.Thing.ThingName":"gh-1"}}`, detached(), false},
		{"absent key, negated operator", `{"StringNotEquals":{"iot:Connection.Thing.ThingName":"gh-1"}}`, detached(), true},
		{"absent key, negated like", `{"StringNotLike":{"iot:Connection.Thing.ThingName":"*"}}`, detached(), true},
		{"absent key, IfExists", `{"StringEqualsIfExists":{"iot:Connection.Thing.ThingName":"gh-9"}}`, detached(), true},
		{"present key, IfExists", `{"StringEqualsIfExists":{"iot:Connection.Thing.ThingName":"gh-9"}}`, connection(), false},
		{"an unknown key is absent", `{"StringEquals":{"aws:SecureTransport":"true"}}`, connection(), false},
		{"a missing attribute is absent", `{"StringNotEquals":{"iot:Connection.Thing.Attributes[none]":"x"}}`, connection(), true},
		{"no thing type is absent", `{"Null":{"iot:Connection.Thing.ThingTypeName":"true"}}`, policy.Context{ClientID: "c1", Thing: &policy.Thing{Name: "t"}}, true},

		{"Null true on an absent key", `{"Null":{"iot:Connection.Thing.ThingName":"true"}}`, detached(), true},
		{"Null true on a present key", `{"Null":{"iot:Connection.Thing.ThingName":"true"}}`, connection(), false},
		{"Null false on a present key", `{"Null":{"iot:Certificate.SerialNumber":"false","iot:Certificate.Subject.CommonName":"false"}}`, connection(), true},
		{"Null false without a certificate", `{"Null":{"iot:Certificate.SerialNumber":"false"}}`, noCertificate(), false},
		{"Null with a value that is not a boolean once resolved", `{"Null":{"iot:Connection.Thing.ThingName":"${iot:ClientId}"}}`, connection(), false},

		{"Bool attached", `{"Bool":{"iot:Connection.Thing.IsAttached":["true"]}}`, connection(), true},
		{"Bool not attached", `{"Bool":{"iot:Connection.Thing.IsAttached":"true"}}`, detached(), false},
		{"Bool false when not attached", `{"Bool":{"iot:Connection.Thing.IsAttached":false}}`, detached(), true},
		{"Bool any case", `{"Bool":{"iot:Connection.Thing.IsAttached":"TRUE"}}`, connection(), true},
		{"Bool on a non-boolean key", `{"Bool":{"iot:ClientId":"true"}}`, connection(), false},

		{"NumericGreaterThan", `{"NumericGreaterThan":{"iot:Connection.Thing.Attributes[n]":5}}`, connection(), true},
		{"NumericLessThanEquals", `{"NumericLessThanEquals":{"iot:Connection.Thing.Attributes[n]":"10"}}`, connection(), true},
		{"NumericEquals decimal", `{"NumericEquals":{"iot:Connection.Thing.Attributes[n]":"1e1"}}`, connection(), true},
		{"NumericLessThan", `{"NumericLessThan":{"iot:Connection.Thing.Attributes[n]":"10"}}`, connection(), false},
		{"Numeric on a word fails", `{"NumericGreaterThanEquals":{"iot:Connection.Thing.Attributes[word]":"0"}}`, connection(), false},
		{"NumericNotEquals on a word holds", `{"NumericNotEquals":{"iot:Connection.Thing.Attributes[word]":"0"}}`, connection(), true},

		{"DateLessThan", `{"DateLessThan":{"iot:Connection.Thing.Attributes[since]":"2025-01-01"}}`, connection(), true},
		{"DateGreaterThan epoch", `{"DateGreaterThan":{"iot:Connection.Thing.Attributes[epoch]":"2023-01-01T00:00:00Z"}}`, connection(), true},
		{"DateEquals", `{"DateEquals":{"iot:Connection.Thing.Attributes[since]":"1704067200"}}`, connection(), true},
		{"DateNotEquals", `{"DateNotEquals":{"iot:Connection.Thing.Attributes[since]":"2024-01-01T00:00:00Z"}}`, connection(), false},

		{"IpAddress in a block", `{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, connection(), true},
		{"IpAddress a bare address", `{"IpAddress":{"aws:SourceIp":["192.168.0.1","10.1.2.3"]}}`, connection(), true},
		{"IpAddress outside", `{"IpAddress":{"aws:SourceIp":"192.168.0.0/16"}}`, connection(), false},
		{"NotIpAddress", `{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, connection(), false},
		{"IpAddress without an address", `{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}`, policy.Context{ClientID: "c1"}, false},

		{"ArnLike", `{"ArnLike":{"iot:Connection.Thing.Attributes[arn]":"arn:aws:iot:*:*:thing/gh-*"}}`, connection(), true},
		{"ArnEquals exact", `{"ArnEquals":{"iot:Connection.Thing.Attributes[arn]":"arn:aws:iot:us-east-1:123456789012:thing/gh-1"}}`, connection(), true},
		{"ArnLike star stays in its part", `{"ArnLike":{"iot:Connection.Thing.Attributes[arn]":"arn:aws:iot:*:thing/gh-1"}}`, connection(), false},
		{"ArnNotLike", `{"ArnNotLike":{"iot:Connection.Thing.Attributes[arn]":"arn:aws:iot:*:*:thing/gh-*"}}`, connection(), false},
		{"ArnLike on a non-ARN", `{"ArnLike":{"iot:ClientId":"arn:*:*:*:*:*"}}`, connection(), false},

		{"BinaryEquals", `{"BinaryEquals":{"iot:Connection.Thing.Attributes[b64]":"aGVsbG8="}}`, connection(), true},

		{"first value by default", `{"StringEquals":{"iot:Certificate.Subject.Organization":"Example Corp"}}`, connection(), true},
		{"the second value is .1", `{"StringEquals":{"iot:Certificate.Subject.Organization.1":"Other"}}`, connection(), true},
		{"an index past the values is absent", `{"Null":{"iot:Certificate.Subject.Organization.2":"true"}}`, connection(), true},
		{"ForAnyValue over .List", `{"ForAnyValue:StringEquals":{"iot:Certificate.Subject.Organization.List":["AnyCompany","Example Corp"]}}`, connection(), true},
		{"ForAllValues over .List, one outside", `{"ForAllValues:StringEquals":{"iot:Certificate.Subject.Organization.List":["Example Corp","AnyCompany"]}}`, connection(), false},
		{"ForAllValues over .List, all inside", `{"ForAllValues:StringEquals":{"iot:Certificate.Subject.Organization.List":["Example Corp","Other"]}}`, connection(), true},
		{"ForAllValues holds when the key is absent", `{"ForAllValues:StringEquals":{"iot:Certificate.Subject.Organization.List":"Example Corp"}}`, noCertificate(), true},
		{"ForAnyValue fails when the key is absent", `{"ForAnyValue:StringEquals":{"iot:Certificate.Subject.Organization.List":"Example Corp"}}`, noCertificate(), false},
		{"ForAnyValue negated: some value outside", `{"ForAnyValue:StringNotEquals":{"iot:Certificate.Subject.Organization.List":"Example Corp"}}`, connection(), true},
		{"ForAllValues negated: every value outside", `{"ForAllValues:StringNotEquals":{"iot:Certificate.Subject.Organization.List":"Example Corp"}}`, connection(), false},
		{"ForAllValues IfExists", `{"ForAllValues:StringLikeIfExists":{"iot:Certificate.Subject.AlternativeName.DNSName.List":"*.example.com"}}`, connection(), true},
		{"a list without qualifier: any value", `{"StringEquals":{"iot:Certificate.Subject.Organization.List":"Other"}}`, connection(), true},
		{"a list without qualifier, negated: no value", `{"StringNotEquals":{"iot:Certificate.Subject.Organization.List":"Other"}}`, connection(), false},
		{"AvailableKeys", `{"ForAnyValue:StringEquals":{"iot:Certificate.AvailableKeys":"iot:Certificate.Subject.AlternativeName.DNSName"}}`, connection(), true},
		{"issuer and serial", `{"StringEquals":{"iot:Certificate.Issuer.CommonName":"iotpipe CA","iot:Certificate.SerialNumber":"10525622389124227206"}}`, connection(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"client/c1","Condition":` + tc.condition + `}]}`
			p, err := policy.Parse("p", []byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			d := policy.Compile([]*policy.Policy{p}, tc.ctx)
			if got := d.AllowConnect("c1"); got != tc.want {
				t.Errorf("condition %s: allowed = %v, want %v (skipped %q)", tc.condition, got, tc.want, d.Skipped())
			}
		})
	}
}

// TestVariables: what each policy variable becomes in a resource, and when
// it has no value (the statement then matches nothing).
func TestVariables(t *testing.T) {
	long := connection()
	long.Certificate.Subject["CommonName"] = []string{strings.Repeat("x", 1025)}
	wild := connection()
	wild.Certificate.Subject["CommonName"] = []string{"gh-*"}
	six := connection()
	six.Certificate.Subject["OrganizationalUnit"] = []string{"1", "2", "3", "4", "5", "6"}
	for _, tc := range []struct {
		variable string
		ctx      policy.Context
		want     string // "" when the variable has no value
	}{
		{"iot:ClientId", connection(), "c1"},
		{"iot:Connection.Thing.ThingName", connection(), "gh-1"},
		{"iot:Connection.Thing.ThingName", detached(), ""},
		{"iot:Connection.Thing.ThingTypeName", connection(), "sensor"},
		{"iot:Connection.Thing.Attributes[n]", connection(), "10"},
		{"iot:Connection.Thing.Attributes[N]", connection(), ""}, // attribute names are case-sensitive
		{"iot:Connection.Thing.Attributes[n]", detached(), ""},
		{"iot:Connection.Thing.IsAttached", connection(), "true"},
		{"iot:Connection.Thing.IsAttached", detached(), "false"},
		{"iot:Certificate.Subject.CommonName", connection(), "gh-1"},
		{"iot:Certificate.Subject.CommonName", noCertificate(), ""},
		{"iot:Certificate.Subject.Organization", connection(), "Example Corp"},
		{"iot:Certificate.Subject.Organization.1", connection(), "Other"},
		{"iot:Certificate.Subject.Organization.2", connection(), ""},
		{"iot:Certificate.Subject.Organization.List", connection(), ""}, // multi-valued: never a variable
		{"iot:Certificate.Subject.Title", connection(), ""},
		{"iot:Certificate.Issuer.CommonName", connection(), "iotpipe CA"},
		{"iot:Certificate.Subject.AlternativeName.DNSName", connection(), "gh-1.example.com"},
		{"iot:Certificate.Subject.AlternativeName.DNSName.1", connection(), "alt.example.com"},
		{"iot:Certificate.SerialNumber", connection(), "10525622389124227206"},
		{"iot:Certificate.Subject.CommonName", long, ""}, // over 1024 characters
		{"iot:Certificate.Subject.CommonName", wild, ""}, // holds a wildcard
		{"iot:Certificate.Subject.OrganizationalUnit.4", six, "5"},
		{"iot:Certificate.Subject.OrganizationalUnit.5", six, ""}, // AWS reads five values
		{"aws:SourceIp", connection(), "10.1.2.3"},
		{"IOT:CLIENTID", connection(), "c1"},
	} {
		t.Run(tc.variable, func(t *testing.T) {
			doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"topic/v/${` + tc.variable + `}"}]}`
			p, err := policy.Parse("p", []byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			d := policy.Compile([]*policy.Policy{p}, tc.ctx)
			if tc.want == "" {
				if len(d.Skipped()) != 1 {
					t.Errorf("${%s} resolved; skipped = %q", tc.variable, d.Skipped())
				}
				return
			}
			if !d.AllowPublish("v/"+tc.want, false) {
				t.Errorf("${%s} is not %q (skipped %q)", tc.variable, tc.want, d.Skipped())
			}
		})
	}
}
