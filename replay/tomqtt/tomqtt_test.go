package tomqtt

import (
	"testing"
	"time"
)

func TestDue(t *testing.T) {
	start := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	first := time.Date(2026, 1, 2, 14, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name  string
		rx    time.Duration // after first
		speed float64
		want  time.Duration // after start
	}{
		{"the first", 0, 1, 0},
		{"original spacing", 90 * time.Second, 1, 90 * time.Second},
		{"ten times faster", 90 * time.Second, 10, 9 * time.Second},
		{"half speed", time.Second, 0.5, 2 * time.Second},
		{"max", time.Hour, 0, 0},
		{"received before the first (another partition's clock)", -time.Second, 1, 0},
	} {
		if got := Due(start, first, first.Add(c.rx), c.speed).Sub(start); got != c.want {
			t.Errorf("%s: due %v after the start, want %v", c.name, got, c.want)
		}
	}
}

func TestCheckPrefix(t *testing.T) {
	for _, c := range []struct {
		prefix string
		ok     bool
	}{
		{"replayed", true},
		{"test/env-2", true},
		{"", false},
		{"a/+", false},
		{"a/#", false},
		{"$aws/things", false},
		{"a//b", false},
		{"a/", false},
		{"/a", false},
	} {
		if err := CheckPrefix(c.prefix); (err == nil) != c.ok {
			t.Errorf("CheckPrefix(%q) = %v, want ok %v", c.prefix, err, c.ok)
		}
	}
	if got := Topic("replayed", "farm/s1/temp"); got != "replayed/farm/s1/temp" {
		t.Errorf("Topic = %q", got)
	}
}
