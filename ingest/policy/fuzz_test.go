package policy_test

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"

	"github.com/iotpipe/iotpipe/ingest/policy"
)

// FuzzParse feeds documents to Parse. A document it accepts must compile
// for any connection, and its Deciders must answer Allow as Explain does,
// on a miss and on a hit.
func FuzzParse(f *testing.F) {
	for _, doc := range fleetPolicies {
		f.Add([]byte(doc))
	}
	if file, err := os.Open(casesFile); err == nil {
		sc := bufio.NewScanner(file)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var c policyCase
			if json.Unmarshal(sc.Bytes(), &c) == nil {
				f.Add([]byte(c.Policy))
			}
		}
		file.Close()
	}
	for _, doc := range []string{
		`{"Version":"2012-10-17","Statement":{"Effect":"Deny","NotAction":"iot:Publish","NotResource":["topic/${iot:ClientId, 'x''y'}/${*}?"]}}`,
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"arn:aws:iot:*:*:*","Condition":{"ForAllValues:StringLikeIfExists":{"iot:Certificate.Subject.Organization.List":["A*"]},"Null":{"iot:Certificate.Subject.CommonName.3":false},"NumericLessThan":{"iot:Connection.Thing.Attributes[n]":1.5e3},"IpAddress":{"aws:SourceIp":["10.0.0.0/8","::1"]},"ArnLike":{"iot:Connection.Thing.Attributes[a]":"arn:aws:iot:${iot:ClientId}:*:*:thing/*"}}}]}`,
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"DateGreaterThan":{"iot:Connection.Thing.Attributes[d]":"2024-01-01"},"BinaryEquals":{"iot:ClientId":"YQ=="}}}]}`,
		`{"Version":"2012-10-17","Statement":[]}`,
		`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"topic/${"}}`,
	} {
		f.Add([]byte(doc))
	}
	contexts := []policy.Context{{}, connection(), detached(), fleetConnection("gh-1")}
	requests := [][2]string{
		{policy.ActionConnect, "client/c1"}, {policy.ActionConnect, "client/gh-1"},
		{policy.ActionPublish, "topic/greenhouse/gh-1/t"}, {policy.ActionPublish, "topic/x"},
		{policy.ActionRetainPublish, "topic/x"}, {policy.ActionReceive, "topic/greenhouse/gh-1/cmd/a"},
		{policy.ActionSubscribe, "topicfilter/a/#"}, {policy.ActionUpdateThingShadow, "thing/gh-1"},
		{"iot:GetRetainedMessage", "topic/x"}, {"iot:publish", "topic/x"}, {policy.ActionPublish, "topicfilter/x"},
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		p, err := policy.Parse("fuzz", doc)
		if err != nil {
			if p != nil {
				t.Fatal("Parse returned a policy with its error")
			}
			return
		}
		for _, c := range contexts {
			d := policy.Compile([]*policy.Policy{p}, c, policy.CacheSize(4))
			for range 2 {
				for _, r := range requests {
					want := d.Explain(r[0], r[1])
					if got := d.Allow(r[0], r[1]); got != want.Allowed {
						t.Fatalf("Allow(%s, %s) = %v, Explain = %s", r[0], r[1], got, want)
					}
				}
			}
		}
	})
}
