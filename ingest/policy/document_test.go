package policy_test

import (
	"strings"
	"testing"

	"github.com/iotpipe/iotpipe/ingest/policy"
)

// request is one question to a compiled policy and its expected answer.
type request struct {
	action, resource string
	want             bool
}

// TestGrammar: the forms AWS accepts, each checked by what it allows.
func TestGrammar(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		reqs []request
	}{
		{
			name: "statement as one object, action and resource as strings",
			doc:  `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:eu-west-1:999999999999:topic/a"}}`,
			reqs: []request{{"iot:Publish", "topic/a", true}, {"iot:Publish", "topic/b", false}, {"iot:Receive", "topic/a", false}},
		},
		{
			name: "short forms and the Id field",
			doc:  `{"Version":"2012-10-17","Id":"short","Statement":[{"Effect":"Allow","Action":["iot:Connect"],"Resource":["client/c1","client/c2"]}]}`,
			reqs: []request{{"iot:Connect", "client/c1", true}, {"iot:Connect", "client/c2", true}, {"iot:Connect", "client/c3", false}},
		},
		{
			name: "any partition, region and account; wildcards in them",
			doc: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":[
				"arn:aws-cn:iot:cn-north-1:111111111111:topic/cn","arn:aws:iot:*:*:topic/any","arn:aws:*:*:*:topic/svc"]}]}`,
			reqs: []request{{"iot:Publish", "topic/cn", true}, {"iot:Publish", "topic/any", true}, {"iot:Publish", "topic/svc", true}},
		},
		{
			name: "a topic with colons in a full ARN",
			doc:  `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:us-east-1:123456789012:topic/a:b:c"}]}`,
			reqs: []request{{"iot:Publish", "topic/a:b:c", true}, {"iot:Publish", "topic/a", false}},
		},
		{
			name: "another service's ARN names nothing here",
			doc:  `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"arn:aws:greengrass:us-east-1:123456789012:*"}]}`,
			reqs: []request{{"iot:Publish", "topic/a", false}, {"iot:Connect", "client/a", false}},
		},
		{
			name: "resource * and action names in any case",
			doc:  `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"IOT:publish","Resource":"*"}]}`,
			reqs: []request{{"iot:Publish", "topic/x/y", true}, {"iot:Subscribe", "topicfilter/x", false}},
		},
		{
			name: "NotAction allows every other action",
			doc:  `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","NotAction":"iot:Publish","Resource":"*"}]}`,
			reqs: []request{{"iot:Publish", "topic/a", false}, {"iot:Subscribe", "topicfilter/a", true}, {"iot:Connect", "client/a", true}, {"iot:GetRetainedMessage", "topic/a", true}},
		},
		{
			name: "NotResource allows everything but",
			doc:  `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","NotResource":"arn:aws:iot:us-east-1:123456789012:topic/$aws/*"}]}`,
			reqs: []request{{"iot:Publish", "topic/a", true}, {"iot:Publish", "topic/$aws/things/x/shadow/update", false}},
		},
		{
			name: "deny with NotResource fences a prefix",
			doc: `{"Version":"2012-10-17","Statement":[
				{"Effect":"Allow","Action":"iot:*","Resource":"*"},
				{"Effect":"Deny","Action":"iot:Publish","NotResource":"topic/dev/${iot:ClientId}/*"}]}`,
			reqs: []request{{"iot:Publish", "topic/dev/c1/t", true}, {"iot:Publish", "topic/dev/c2/t", false}, {"iot:Subscribe", "topicfilter/dev/c2/t", true}},
		},
		{
			name: "actions iotpipe does not cache are still decided",
			doc:  `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["iot:GetRetainedMessage","iot:DescribeJobExecution"],"Resource":["topic/r/*","thing/${iot:ClientId}"]}]}`,
			reqs: []request{{"iot:GetRetainedMessage", "topic/r/1", true}, {"iot:DescribeJobExecution", "thing/c1", true}, {"iot:DescribeJobExecution", "thing/c2", false}},
		},
		{
			name: "named shadows",
			doc:  `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:UpdateThingShadow","Resource":["thing/${iot:ClientId}","thing/${iot:ClientId}/*"]}]}`,
			reqs: []request{{"iot:UpdateThingShadow", "thing/c1", true}, {"iot:UpdateThingShadow", "thing/c1/config", true}, {"iot:UpdateThingShadow", "thing/c2/config", false}, {"iot:GetThingShadow", "thing/c1", false}},
		},
		{
			name: "condition values as JSON booleans, numbers and lists",
			doc: `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{
				"Bool":{"iot:Connection.Thing.IsAttached":false},
				"StringEquals":{"iot:ClientId":["c0","c1"]},
				"NumericLessThanIfExists":{"iot:Connection.Thing.Attributes[n]":1}}}]}`,
			reqs: []request{{"iot:Connect", "client/c1", true}},
		},
		{
			name: "a variable with a default value",
			doc:  `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"topic/${iot:Connection.Thing.ThingName, 'guest'}/*"}]}`,
			reqs: []request{{"iot:Publish", "topic/guest/a", true}, {"iot:Publish", "topic/c1/a", false}},
		},
		{
			name: "an unknown variable matches nothing, the other statements still do",
			doc: `{"Version":"2012-10-17","Statement":[
				{"Effect":"Allow","Action":"iot:Publish","Resource":"topic/${cognito-identity.amazonaws.com:sub}/*"},
				{"Effect":"Allow","Action":"iot:Publish","Resource":"topic/open"}]}`,
			reqs: []request{{"iot:Publish", "topic/open", true}, {"iot:Publish", "topic/${cognito-identity.amazonaws.com:sub}/a", false}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := policy.Parse("p", []byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			d := policy.Compile([]*policy.Policy{p}, policy.Context{ClientID: "c1"})
			for _, r := range tc.reqs {
				if got := d.Allow(r.action, r.resource); got != r.want {
					t.Errorf("Allow(%s, %s) = %v, want %v (%s; skipped %q)", r.action, r.resource, got, r.want, d.Explain(r.action, r.resource), d.Skipped())
				}
			}
		})
	}
}

// TestParseErrors: every error names what is wrong and where.
func TestParseErrors(t *testing.T) {
	const v = `"Version":"2012-10-17",`
	stmt := func(body string) string {
		return `{` + v + `"Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"*"},` + body + `]}`
	}
	for _, tc := range []struct {
		name, doc, want string
	}{
		{"not JSON", "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [,]\n}", `policy "p": line 3, column 17: invalid character ','`},
		{"not an object", `[]`, `policy "p": document is not a JSON object`},
		{"null", `null`, `document is not a JSON object`},
		{"no version", `{"Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"*"}}`, `Version is missing`},
		{"old version", `{"Version":"2008-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"*"}}`, `Version "2008-10-17" is not supported`},
		{"version not a string", `{"Version":2012,"Statement":[]}`, `Version must be a string`},
		{"unknown top-level field", `{` + v + `"Statements":[]}`, `unknown field "Statements"`},
		{"no statement", `{` + v + `"Id":"x"}`, `Statement is missing`},
		{"empty statement list", `{` + v + `"Statement":[]}`, `Statement is empty`},
		{"statement not an object", `{` + v + `"Statement":"x"}`, `Statement must be an object or a list of objects`},
		{"statement entry not an object", stmt(`7`), `statement 2 is not a JSON object`},
		{"no effect", stmt(`{"Action":"iot:Publish","Resource":"*"}`), `statement 2: Effect is missing`},
		{"effect in lower case", stmt(`{"Sid":"pub","Effect":"allow","Action":"iot:Publish","Resource":"*"}`), `statement 2 (Sid "pub"): Effect "allow" is not Allow or Deny`},
		{"principal", stmt(`{"Effect":"Allow","Principal":"*","Action":"iot:Publish","Resource":"*"}`), `statement 2: Principal is not allowed`},
		{"unknown statement field", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resources":"*"}`), `statement 2: unknown field "Resources"`},
		{"no action", stmt(`{"Effect":"Allow","Resource":"*"}`), `statement 2: Action is missing`},
		{"action and notaction", stmt(`{"Effect":"Allow","Action":"iot:Publish","NotAction":"iot:Receive","Resource":"*"}`), `statement 2: Action and NotAction together`},
		{"action empty list", stmt(`{"Effect":"Allow","Action":[],"Resource":"*"}`), `statement 2: Action: empty list`},
		{"action a number", stmt(`{"Effect":"Allow","Action":42,"Resource":"*"}`), `statement 2: Action: must be a string or a list of strings`},
		{"action without service", stmt(`{"Effect":"Allow","Action":"Publish","Resource":"*"}`), `statement 2: Action: "Publish" is not an action such as iot:Publish`},
		{"action with a variable", stmt(`{"Effect":"Allow","Action":"iot:${iot:ClientId}","Resource":"*"}`), `policy variables are not allowed in actions`},
		{"no resource", stmt(`{"Effect":"Allow","Action":"iot:Publish"}`), `statement 2: Resource is missing`},
		{"empty resource", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":["topic/a",""]}`), `statement 2: Resource: entry 2 is an empty string`},
		{"short ARN", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:us-east-1"}`), `statement 2: Resource: "arn:aws:iot:us-east-1" is not an ARN`},
		{"ARN without resource", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"arn:aws:iot:us-east-1:1:"}`), `names no resource`},
		{"unterminated variable", stmt(`{"Effect":"Allow","Action":"iot:Publish","NotResource":"topic/${iot:ClientId"}`), `statement 2: NotResource: "topic/${iot:ClientId": policy variable "${iot:ClientId" has no closing }`},
		{"empty variable", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"topic/${}"}`), `empty policy variable`},
		{"unterminated default", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"topic/${iot:ClientId, 'x}"}`), `unterminated default value`},
		{"unquoted default", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"topic/${iot:ClientId, x}"}`), `must be quoted`},
		{"condition not an object", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":[]}`), `statement 2: Condition: must be an object of operators`},
		{"unknown operator", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"StringMatches":{"iot:ClientId":"a"}}}`), `statement 2: Condition: unknown condition operator "StringMatches"`},
		{"unknown qualifier", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"ForSomeValues:StringLike":{"iot:ClientId":"a"}}}`), `a qualifier is ForAnyValue: or ForAllValues:`},
		{"null if exists", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"NullIfExists":{"iot:ClientId":"true"}}}`), `Null takes neither IfExists`},
		{"operator without keys", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"StringLike":{}}}`), `StringLike has no condition key`},
		{"empty value list", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"StringLike":{"iot:ClientId":[]}}}`), `StringLike: iot:ClientId: value list is empty`},
		{"value an object", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"StringLike":{"iot:ClientId":{"a":1}}}}`), `value must be a string, number, boolean or a list of them`},
		{"bool not boolean", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"Bool":{"iot:Connection.Thing.IsAttached":"yes"}}}`), `statement 2: Condition: iot:Connection.Thing.IsAttached: Bool value "yes" is not true or false`},
		{"null not boolean", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"Null":{"iot:ClientId":"no"}}}`), `Null value "no" is not true or false`},
		{"numeric not a number", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"NumericEquals":{"iot:Connection.Thing.Attributes[n]":"ten"}}}`), `NumericEquals value "ten" is not a number`},
		{"numeric infinity", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"NumericEquals":{"iot:Connection.Thing.Attributes[n]":"Inf"}}}`), `is not a number`},
		{"date not a date", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"DateLessThan":{"iot:Connection.Thing.Attributes[d]":"yesterday"}}}`), `DateLessThan value "yesterday" is not a date`},
		{"ip not an address", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"300.1.1.1/8"}}}`), `IpAddress value "300.1.1.1/8" is not an IP address or CIDR block`},
		{"binary not base64", stmt(`{"Effect":"Allow","Action":"iot:Publish","Resource":"*","Condition":{"BinaryEquals":{"iot:ClientId":"!!"}}}`), `BinaryEquals value "!!" is not base64`},
		{"too large", `{` + v + `"Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"topic/` + strings.Repeat("a", 2048) + `"}}`, `AWS IoT allows 2048`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := policy.Parse("p", []byte(tc.doc))
			if err == nil {
				t.Fatalf("Parse accepted %s", tc.doc)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), `policy "p": `) {
				t.Errorf("error %q does not name the policy", err)
			}
		})
	}
}

// TestWarnings: names iotpipe never resolves are reported, not refused.
func TestWarnings(t *testing.T) {
	p, err := policy.Parse("p", []byte(`{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"iot:Publish","Resource":"topic/${cognito-identity.amazonaws.com:sub}"},
		{"Effect":"Allow","Action":"iot:Connect","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"true"}}},
		{"Effect":"Allow","Action":"iot:Connect","Resource":"client/${iot:ClientId}"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`policy variable "cognito-identity.amazonaws.com:sub" is not known to iotpipe: it never has a value`,
		`condition key "aws:SecureTransport" is not known to iotpipe: it never has a value`,
	}
	if got := p.Warnings(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Warnings() = %q, want %q", got, want)
	}
}
