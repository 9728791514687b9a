package webhook

import (
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/schemas"
)

// Issue 21 item 11: 10 hanging firings took the host's 8 slots and a
// firing of another rule for another path of that host waited more than
// 5 minutes. Here one rule's path hangs (every attempt held until the
// client gives up) and another rule's firings to the same host must all
// be delivered meanwhile, once each.
func TestExecutorHungTargetDoesNotStarveOtherRules(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration // RequestTimeout
		target  int           // TargetConcurrency (0: default)
		rule    int           // RuleConcurrency (0: default)
	}{
		// Held longer than the test: only the per-rule cap lets the other
		// rule through. The 8 slots per host, then the defaults.
		{name: "attempts hang, 8 slots", timeout: time.Minute, target: 8},
		{name: "attempts hang, default slots", timeout: time.Minute},
		// No per-rule cap: the stuck rule takes every slot, each attempt
		// times out; a firing waiting to retry holds no slot, and a freed
		// slot goes to the rule with the fewest in flight.
		{name: "attempts time out, no rule cap", timeout: 200 * time.Millisecond, target: 8, rule: 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBroker(t, 1)
			hs := newHangServer(t)
			srv := httptest.NewServer(hs)
			defer srv.Close()
			defer hs.stopHanging()

			var stuck, healthy []schemas.Action
			for i := range 10 {
				a := action(i, srv.URL+"/hang")
				a.Rule = "stuck"
				stuck = append(stuck, a)
			}
			for i := 10; i < 30; i++ {
				a := action(i, srv.URL+"/ok")
				a.Rule = "healthy"
				healthy = append(healthy, a)
			}
			b.produce(t, 1, append(stuck, healthy...)...)
			o := testOptions(b, nil)
			o.TargetConcurrency, o.RuleConcurrency = tt.target, tt.rule
			o.RequestTimeout = tt.timeout
			startExecutor(t, o)

			waitFor(t, "the healthy rule's 20 firings delivered while the other rule's path hangs", func() bool {
				u, _, _ := hs.rv.stats()
				return u == len(healthy)
			})
			for _, a := range healthy {
				if n := hs.rv.count(a.Key); n != 1 {
					t.Errorf("healthy key %s accepted %d times, want 1", a.Key, n)
				}
			}
			hs.stopHanging()
			waitFor(t, "the stuck rule's firings delivered once the path answers", func() bool {
				u, _, _ := hs.rv.stats()
				return u == len(healthy)+len(stuck)
			})
			for _, a := range append(stuck, healthy...) {
				n := hs.rv.count(a.Key)
				// An attempt that timed out at the executor may still be
				// answered by the target when it is released: a repeat
				// the receiver drops by Idempotency-Key. Only a hung
				// attempt (never timed out) must not repeat.
				if n < 1 || n > 1 && tt.timeout >= time.Minute {
					t.Errorf("key %s accepted %d times, want 1", a.Key, n)
				}
			}
			t.Logf("%s: stuck firings reached the hanging path %s times in all", tt.name, fmt.Sprint(func() int {
				n := 0
				for _, a := range stuck {
					n += hs.arrived(a.Key)
				}
				return n
			}()))
		})
	}
}

func TestSweepForgetsIdleTargets(t *testing.T) {
	e, err := New(Options{Clients: &eventlog.Log{}})
	if err != nil {
		t.Fatal(err)
	}
	busy, idle, waiting := e.hostFor("http://busy:80"), e.hostFor("http://idle:80"), e.hostFor("http://waiting:80")
	busy.rules["r"] = &unit{h: busy, rule: "r", active: 1}
	busy.rules["done"] = &unit{h: busy, rule: "done"}
	busy.active = 1
	idle.rules["r"] = &unit{h: idle, rule: "r"}
	waiting.waiting = 1 // a firing waiting for its next attempt
	e.sweep()
	if len(e.hosts) != 2 || e.hosts["http://idle:80"] != nil {
		t.Fatalf("hosts after sweep: %v, want busy and waiting", e.hosts)
	}
	if len(busy.rules) != 1 || busy.rules["r"] == nil {
		t.Fatalf("busy target's rules after sweep: %v, want r only", busy.rules)
	}
}
