package policy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/iotpipe/iotpipe/ingest/policy"
)

// casesFile is a copy of ../shared/policies/cases.jsonl (AWS's documented
// semantics), kept in testdata so the test needs nothing outside the
// repository.
const casesFile = "testdata/cases.jsonl"

// policyCase is one line of cases.jsonl.
type policyCase struct {
	Name     string          `json:"name"`
	Policy   json.RawMessage `json:"policy"`
	Context  caseContext     `json:"context"`
	Action   string          `json:"action"`
	Resource string          `json:"resource"`
	Expect   string          `json:"expect"`
}

// caseContext is the connection of a case; the scenarios use it too.
type caseContext struct {
	ClientID     string              `json:"clientId"`
	Thing        *string             `json:"thing"`
	ThingType    *string             `json:"thingType"`
	Attributes   map[string]string   `json:"attributes"`
	Attached     *bool               `json:"attached"`
	CommonName   string              `json:"commonName"`
	SerialNumber string              `json:"serialNumber"`
	Subject      map[string][]string `json:"subject"`
	Issuer       map[string][]string `json:"issuer"`
	SubjectAlt   map[string][]string `json:"subjectAltName"`
	SourceIP     string              `json:"sourceIp"`
}

// context turns a case's connection into a policy.Context: a certificate
// when any certificate field is given, a thing when thing is not null.
func (c caseContext) context(t testing.TB) policy.Context {
	t.Helper()
	ctx := policy.Context{ClientID: c.ClientID}
	if c.Thing != nil {
		ctx.Thing = &policy.Thing{Name: *c.Thing, Attributes: c.Attributes}
		if c.ThingType != nil {
			ctx.Thing.TypeName = *c.ThingType
		}
	}
	if c.Attached != nil && *c.Attached != (c.Thing != nil) {
		t.Fatalf("case says attached=%v with thing %v: a connection is attached exactly when it has a thing", *c.Attached, c.Thing)
	}
	if c.CommonName != "" || c.SerialNumber != "" || c.Subject != nil || c.Issuer != nil || c.SubjectAlt != nil {
		cert := &policy.Certificate{
			SerialNumber:   c.SerialNumber,
			Subject:        policy.Names(c.Subject),
			Issuer:         policy.Names(c.Issuer),
			SubjectAltName: policy.Names(c.SubjectAlt),
		}
		if c.CommonName != "" {
			if cert.Subject == nil {
				cert.Subject = policy.Names{}
			}
			cert.Subject["CommonName"] = append([]string{c.CommonName}, cert.Subject["CommonName"]...)
		}
		ctx.Certificate = cert
	}
	if c.SourceIP != "" {
		if err := ctx.SourceIP.UnmarshalText([]byte(c.SourceIP)); err != nil {
			t.Fatalf("sourceIp: %v", err)
		}
	}
	return ctx
}

// TestCases runs every line of cases.jsonl through Compile and Allow, the
// path the MQTT front takes, and through Explain (uncached) and a
// Decider without a cache: all must give the expected answer.
func TestCases(t *testing.T) {
	f, err := os.Open(casesFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		n++
		var c policyCase
		if err := json.Unmarshal(line, &c); err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		t.Run(c.Name, func(t *testing.T) {
			if c.Expect != "allow" && c.Expect != "deny" {
				t.Fatalf("expect %q is not allow or deny", c.Expect)
			}
			want := c.Expect == "allow"
			p, err := policy.Parse("case", c.Policy)
			if err != nil {
				t.Fatal(err)
			}
			ctx := c.Context.context(t)
			d := policy.Compile([]*policy.Policy{p}, ctx)
			for i := range 2 { // a miss, then a hit
				if got := d.Allow(c.Action, c.Resource); got != want {
					t.Errorf("Allow(%s, %s) call %d = %v, want %s; %s; skipped: %q",
						c.Action, c.Resource, i+1, got, c.Expect, d.Explain(c.Action, c.Resource), d.Skipped())
				}
			}
			if got := d.Explain(c.Action, c.Resource); got.Allowed != want {
				t.Errorf("Explain = %s, want %s", got, c.Expect)
			}
			uncached := policy.Compile([]*policy.Policy{p}, ctx, policy.CacheSize(0))
			if got := uncached.Allow(c.Action, c.Resource); got != want {
				t.Errorf("Allow without cache = %v, want %s", got, c.Expect)
			}
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 31 {
		t.Fatalf("read %d cases from %s, want at least 31", n, casesFile)
	}
}
