package rulesql

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// matchFilter is a direct MQTT filter matcher, the reference for Router.
func matchFilter(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	f, t := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, l := range f {
		if l == "#" {
			return true
		}
		if i >= len(t) || l != "+" && l != t[i] {
			return false
		}
	}
	return len(f) == len(t)
}

func names(rules []*Rule) string {
	s := make([]string, len(rules))
	for i, r := range rules {
		s[i] = r.Name
	}
	return strings.Join(s, ",")
}

func TestRouter(t *testing.T) {
	filters := []string{"a/b", "a/+", "a/#", "#", "+/b", "+", "/topic/+", "a/b/c", "+/+/+", "$SYS/#", "a/+/#"}
	var r Router
	for i, f := range filters {
		r.Add(&Rule{Name: fmt.Sprint(i), Topic: f, index: i})
	}
	tests := []struct{ topic, want string }{
		{"a/b", "0,1,2,3,4,10"},
		{"a", "2,3,5"},
		{"a/b/c", "2,3,7,8,10"},
		{"/topic/x", "3,6,8"},
		{"b", "3,5"},
		{"$SYS/broker", "9"},
		{"x/y/z/w", "3"},
	}
	for _, tt := range tests {
		if got := names(r.Match(tt.topic)); got != tt.want {
			t.Errorf("Match(%q) = %s, want %s", tt.topic, got, tt.want)
		}
	}
}

// TestRouterAgainstReference checks random filters and topics against
// the direct matcher.
func TestRouterAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	levels := []string{"a", "b", "c", "", "$x"}
	var filters []string
	var r Router
	for i := range 300 {
		n := 1 + rng.IntN(4)
		parts := make([]string, n)
		for j := range parts {
			switch k := rng.IntN(7); {
			case k == 0:
				parts[j] = "+"
			case k == 1 && j == n-1:
				parts[j] = "#"
			default:
				parts[j] = levels[rng.IntN(len(levels))]
			}
		}
		f := strings.Join(parts, "/")
		filters = append(filters, f)
		r.Add(&Rule{Name: fmt.Sprint(i), Topic: f, index: i})
	}
	for range 2000 {
		n := 1 + rng.IntN(5)
		parts := make([]string, n)
		for j := range parts {
			parts[j] = levels[rng.IntN(len(levels))]
		}
		topic := strings.Join(parts, "/")
		var want []string
		for i, f := range filters {
			if matchFilter(f, topic) {
				want = append(want, fmt.Sprint(i))
			}
		}
		if got := names(r.Match(topic)); got != strings.Join(want, ",") {
			t.Fatalf("Match(%q) = %s, want %s", topic, got, strings.Join(want, ","))
		}
	}
}
