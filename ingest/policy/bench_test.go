package policy_test

import (
	"fmt"
	"testing"

	"github.com/iotpipe/iotpipe/ingest/policy"
)

// The per-decision benchmarks use fleetPolicies (three policies, seven
// statements, with variables, conditions and a Deny), as one device
// connection sees them.

// BenchmarkAllowHit is the hot path: a publish to a topic the connection
// has published to before.
func BenchmarkAllowHit(b *testing.B) {
	d := policy.Compile(parseFleet(b), fleetConnection("gh-1"))
	d.AllowPublish("greenhouse/gh-1/temp", false)
	b.ReportAllocs()
	for b.Loop() {
		if !d.AllowPublish("greenhouse/gh-1/temp", false) {
			b.Fatal("denied")
		}
	}
}

// BenchmarkAllowHitParallel is the hit path asked from every core at once
// (deliveries to one subscriber from many publishers).
func BenchmarkAllowHitParallel(b *testing.B) {
	d := policy.Compile(parseFleet(b), fleetConnection("gh-1"))
	d.AllowReceive("greenhouse/gh-1/cmd/x")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !d.AllowReceive("greenhouse/gh-1/cmd/x") {
				b.Fatal("denied")
			}
		}
	})
}

// BenchmarkAllowMiss is a decision never seen before: the match over the
// compiled patterns (the cache off, so every call matches).
func BenchmarkAllowMiss(b *testing.B) {
	d := policy.Compile(parseFleet(b), fleetConnection("gh-1"), policy.CacheSize(0))
	b.ReportAllocs()
	for b.Loop() {
		if !d.AllowPublish("greenhouse/gh-1/lux/raw", false) {
			b.Fatal("denied")
		}
	}
}

// BenchmarkAllowMissEvict is a stream of resources larger than the cache:
// each call matches, evicts an entry and remembers its answer.
func BenchmarkAllowMissEvict(b *testing.B) {
	d := policy.Compile(parseFleet(b), fleetConnection("gh-1"))
	topics := make([]string, 4*policy.DefaultCacheSize)
	for i := range topics {
		topics[i] = fmt.Sprintf("greenhouse/gh-1/sensor-%d/temp", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if !d.AllowPublish(topics[i%len(topics)], false) {
			b.Fatal("denied")
		}
		i++
	}
}

// BenchmarkCompile is the work per connection: substituting its variables
// and deciding its conditions.
func BenchmarkCompile(b *testing.B) {
	ps := parseFleet(b)
	c := fleetConnection("gh-1")
	b.ReportAllocs()
	for b.Loop() {
		policy.Compile(ps, c)
	}
}

// BenchmarkParse is the work per policy document (once, when it is created
// or loaded).
func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for i, doc := range fleetPolicies {
			if _, err := policy.Parse(fmt.Sprint(i), []byte(doc)); err != nil {
				b.Fatal(err)
			}
		}
	}
}
