package policy_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/iotpipe/iotpipe/ingest/policy"
)

// fleetPolicies is a typical set attached to one device certificate: its
// own connect, topics, commands and shadows, a fleet-wide lockdown Deny and
// a read-only broadcast area. The benchmarks use it too.
var fleetPolicies = []string{
	`{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:123456789012:client/${iot:Connection.Thing.ThingName}",
		 "Condition":{"Bool":{"iot:Connection.Thing.IsAttached":"true"}}},
		{"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":[
			"arn:aws:iot:us-east-1:123456789012:topic/greenhouse/${iot:ClientId}/*",
			"arn:aws:iot:us-east-1:123456789012:topic/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"]},
		{"Effect":"Allow","Action":"iot:Subscribe","Resource":[
			"arn:aws:iot:us-east-1:123456789012:topicfilter/greenhouse/${iot:ClientId}/cmd/#",
			"arn:aws:iot:us-east-1:123456789012:topicfilter/$aws/things/${iot:Connection.Thing.ThingName}/shadow/*"]},
		{"Effect":"Allow","Action":["iot:GetThingShadow","iot:UpdateThingShadow"],"Resource":"arn:aws:iot:us-east-1:123456789012:thing/${iot:Connection.Thing.ThingName}"}]}`,
	`{"Version":"2012-10-17","Statement":[
		{"Sid":"lockdown","Effect":"Deny","Action":["iot:Publish","iot:Subscribe"],"Resource":[
			"arn:aws:iot:us-east-1:123456789012:topic/greenhouse/*/control/*",
			"arn:aws:iot:us-east-1:123456789012:topicfilter/greenhouse/*/control/*"]}]}`,
	`{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":["iot:Subscribe"],"Resource":"arn:aws:iot:us-east-1:123456789012:topicfilter/broadcast/${iot:Connection.Thing.Attributes[farm]}/*"},
		{"Effect":"Allow","Action":["iot:Receive"],"Resource":"arn:aws:iot:us-east-1:123456789012:topic/broadcast/${iot:Connection.Thing.Attributes[farm]}/*",
		 "Condition":{"StringEquals":{"iot:Connection.Thing.ThingTypeName":"sensor"}}}]}`,
}

func parseFleet(tb testing.TB) []*policy.Policy {
	tb.Helper()
	var ps []*policy.Policy
	for i, doc := range fleetPolicies {
		p, err := policy.Parse(fmt.Sprintf("fleet-%d", i+1), []byte(doc))
		if err != nil {
			tb.Fatal(err)
		}
		ps = append(ps, p)
	}
	return ps
}

func fleetConnection(id string) policy.Context {
	return policy.Context{
		ClientID: id,
		Thing:    &policy.Thing{Name: id, TypeName: "sensor", Attributes: map[string]string{"farm": "macdonald"}},
	}
}

// TestAllowHitAllocatesNothing: once a resource has been decided, asking
// again is a map lookup without allocation, for Allow and the helpers.
func TestAllowHitAllocatesNothing(t *testing.T) {
	d := policy.Compile(parseFleet(t), fleetConnection("gh-1"))
	for _, q := range []struct {
		name string
		ask  func() bool
		want bool
	}{
		{"Allow publish", func() bool { return d.Allow(policy.ActionPublish, "topic/greenhouse/gh-1/temp") }, true},
		{"Allow denied publish", func() bool { return d.Allow(policy.ActionPublish, "topic/greenhouse/gh-2/temp") }, false},
		{"AllowPublish", func() bool { return d.AllowPublish("greenhouse/gh-1/temp", false) }, true},
		{"AllowReceive", func() bool { return d.AllowReceive("broadcast/macdonald/weather") }, true},
		{"AllowSubscribe", func() bool { return d.AllowSubscribe("greenhouse/gh-1/cmd/#") }, true},
		{"Allow shadow", func() bool { return d.Allow(policy.ActionUpdateThingShadow, "thing/gh-1") }, true},
	} {
		if got := q.ask(); got != q.want {
			t.Fatalf("%s = %v, want %v", q.name, got, q.want)
		}
		if n := testing.AllocsPerRun(100, func() { q.ask() }); n != 0 {
			t.Errorf("%s allocates %v times a call on a hit", q.name, n)
		}
	}
}

// TestAllowAgreesWithExplain: with caches of every size, including one
// smaller than the set of resources (evictions), and without one, Allow
// gives Explain's answer, also for action names in another case (not
// cached) and for resources of another type than the action's.
func TestAllowAgreesWithExplain(t *testing.T) {
	ps := parseFleet(t)
	var resources []string
	for i := range 40 {
		resources = append(resources,
			fmt.Sprintf("topic/greenhouse/gh-%d/t%d", i%3, i),
			fmt.Sprintf("topic/greenhouse/gh-1/control/%d", i),
			fmt.Sprintf("topicfilter/greenhouse/gh-%d/cmd/#", i%3),
			fmt.Sprintf("topic/broadcast/macdonald/%d", i),
			fmt.Sprintf("thing/gh-%d", i%3),
			fmt.Sprintf("client/gh-%d", i%3))
	}
	actions := []string{policy.ActionConnect, policy.ActionPublish, policy.ActionReceive, policy.ActionSubscribe,
		policy.ActionRetainPublish, policy.ActionGetThingShadow, policy.ActionUpdateThingShadow, "iot:publish", "iot:GetRetainedMessage"}
	for _, size := range []int{0, 1, 4, policy.DefaultCacheSize, 1000} {
		d := policy.Compile(ps, fleetConnection("gh-1"), policy.CacheSize(size))
		allowed := 0
		for round := range 3 {
			for _, a := range actions {
				for _, r := range resources {
					want := d.Explain(a, r)
					if got := d.Allow(a, r); got != want.Allowed {
						t.Fatalf("cache %d round %d: Allow(%s, %s) = %v, Explain = %s", size, round, a, r, got, want)
					}
					if want.Allowed {
						allowed++
					}
				}
			}
		}
		if allowed == 0 {
			t.Fatalf("cache %d: nothing allowed: the test asks nothing", size)
		}
	}
}

// TestConcurrentDecisions: one Decider asked from many goroutines (a
// connection's own publishes and other clients' deliveries to it) with a
// small cache that keeps evicting. Run with -race.
func TestConcurrentDecisions(t *testing.T) {
	d := policy.Compile(parseFleet(t), fleetConnection("gh-1"), policy.CacheSize(8))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				own := fmt.Sprintf("greenhouse/gh-1/t%d", (i+g)%50)
				other := fmt.Sprintf("greenhouse/gh-2/t%d", (i+g)%50)
				if !d.AllowPublish(own, false) || d.AllowPublish(other, false) ||
					!d.AllowReceive(own) || d.AllowReceive(other) {
					errs <- fmt.Errorf("goroutine %d: wrong answer at %d", g, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
