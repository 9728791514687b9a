package policy_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	"github.com/iotpipe/iotpipe/ingest/policy"
)

// TestScenarios replays the scripts in testdata/scenarios/: policies,
// connections and the decisions they get, in text a reader can review.
// Run with -rewrite to regenerate the expected output.
//
// Commands:
//
//	policy name=<name>
//	<policy document>             parse a policy (the output is ok, its
//	                              warnings or the error)
//	connect [name=<conn>] [policies=(<a>,<b>)]
//	<context JSON>                compile a connection (the fields of
//	                              cases.jsonl's context, plus serialNumber,
//	                              subject, issuer, subjectAltName, sourceIp)
//	                              with the named policies (default: all so
//	                              far); the output lists skipped statements
//	decide [conn=<conn>]
//	<action> <resource>           Allow, with the statement that decided
//	                              (a resource or topic may hold spaces)
//	publish <topic> [retain]      AllowPublish
//	subscribe <filter>            AllowSubscribe
//	receive <topic>               AllowReceive
//	connect <client id>           AllowConnect
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata/scenarios", func(t *testing.T, path string) {
		s := &scenario{policies: map[string]*policy.Policy{}, conns: map[string]*policy.Decider{}}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return s.run(t, d)
		})
	})
}

type scenario struct {
	policies map[string]*policy.Policy
	order    []string
	conns    map[string]*policy.Decider
	last     string
}

func (s *scenario) run(t *testing.T, d *datadriven.TestData) string {
	switch d.Cmd {
	case "policy":
		var name string
		d.ScanArgs(t, "name", &name)
		p, err := policy.Parse(name, []byte(d.Input))
		if err != nil {
			return "error: " + err.Error()
		}
		if _, dup := s.policies[name]; !dup {
			s.order = append(s.order, name)
		}
		s.policies[name] = p
		if w := p.Warnings(); len(w) > 0 {
			return "ok\nwarning: " + strings.Join(w, "\nwarning: ")
		}
		return "ok"
	case "connect":
		name := "default"
		d.MaybeScanArgs(t, "name", &name)
		names := s.order
		if arg, ok := d.Arg("policies"); ok {
			names = arg.Vals
		}
		var ps []*policy.Policy
		for _, n := range names {
			if n == "" { // policies=()
				continue
			}
			p := s.policies[n]
			if p == nil {
				d.Fatalf(t, "no policy %q", n)
			}
			ps = append(ps, p)
		}
		var cc caseContext
		if err := json.Unmarshal([]byte(d.Input), &cc); err != nil {
			d.Fatalf(t, "context: %v", err)
		}
		dec := policy.Compile(ps, cc.context(t))
		s.conns[name], s.last = dec, name
		if sk := dec.Skipped(); len(sk) > 0 {
			return "skipped: " + strings.Join(sk, "\nskipped: ")
		}
		return "ok"
	case "decide":
		name := s.last
		d.MaybeScanArgs(t, "conn", &name)
		dec := s.conns[name]
		if dec == nil {
			d.Fatalf(t, "no connection %q", name)
		}
		var out strings.Builder
		for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
			cmd, arg, _ := strings.Cut(line, " ")
			fmt.Fprintf(&out, "%s: %s\n", line, decideLine(t, d, dec, cmd, arg))
		}
		return out.String()
	}
	d.Fatalf(t, "unknown command %q", d.Cmd)
	return ""
}

// decideLine answers one line of a decide command. Allow and the typed
// helpers must agree with Explain, asked twice (a cache miss, then a hit).
func decideLine(t *testing.T, d *datadriven.TestData, dec *policy.Decider, cmd, arg string) string {
	verdict := func(ok bool) string {
		if ok {
			return "allow"
		}
		return "deny"
	}
	check := func(got bool, action, resource string) policy.Decision {
		want := dec.Explain(action, resource)
		if got != want.Allowed {
			d.Fatalf(t, "%s %s: Allow = %v, Explain = %s", action, resource, got, want)
		}
		return want
	}
	if arg == "" {
		d.Fatalf(t, "decide line %q: want <action> <resource>", cmd)
	}
	topic, retain := strings.CutSuffix(arg, " retain")
	var got bool
	for range 2 {
		switch cmd {
		case "publish":
			got = dec.AllowPublish(topic, retain)
			if !retain {
				check(got, policy.ActionPublish, "topic/"+topic)
				continue
			}
			pub := dec.Explain(policy.ActionPublish, "topic/"+topic)
			ret := dec.Explain(policy.ActionRetainPublish, "topic/"+topic)
			if got != (pub.Allowed && ret.Allowed) {
				d.Fatalf(t, "AllowPublish(%s, retain) = %v; Publish %s; RetainPublish %s", topic, got, pub, ret)
			}
		case "subscribe":
			got = check(dec.AllowSubscribe(arg), policy.ActionSubscribe, "topicfilter/"+arg).Allowed
		case "receive":
			got = check(dec.AllowReceive(arg), policy.ActionReceive, "topic/"+arg).Allowed
		case "connect":
			got = check(dec.AllowConnect(arg), policy.ActionConnect, "client/"+arg).Allowed
		default:
			got = check(dec.Allow(cmd, arg), cmd, arg).Allowed
		}
	}
	switch cmd {
	case "publish":
		s := "Publish " + dec.Explain(policy.ActionPublish, "topic/"+topic).String()
		if retain {
			s += "; RetainPublish " + dec.Explain(policy.ActionRetainPublish, "topic/"+topic).String()
		}
		return verdict(got) + " (" + s + ")"
	case "subscribe":
		return dec.Explain(policy.ActionSubscribe, "topicfilter/"+arg).String()
	case "receive":
		return dec.Explain(policy.ActionReceive, "topic/"+arg).String()
	case "connect":
		return dec.Explain(policy.ActionConnect, "client/"+arg).String()
	}
	return dec.Explain(cmd, arg).String()
}
