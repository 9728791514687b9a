package replay

import (
	"testing"
	"time"
)

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
		err  bool
	}{
		{"now", now, false},
		{"-2h", now.Add(-2 * time.Hour), false},
		{"-90m", now.Add(-90 * time.Minute), false},
		{"-1d", now.Add(-24 * time.Hour), false},
		{"-1d12h", now.Add(-36 * time.Hour), false},
		{"+30s", now.Add(30 * time.Second), false},
		{"2026-01-02T15:04:05Z", time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC), false},
		{"2026-01-02T15:04:05.25+01:00", time.Date(2026, 1, 2, 14, 4, 5, 250e6, time.UTC), false},
		{"2026-01-02", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), false},
		{"", time.Time{}, true},
		{"yesterday", time.Time{}, true},
		{"-2", time.Time{}, true},
		{"-1.5d", time.Time{}, true},
		{"--2h", time.Time{}, true},
		{"-2h-1m", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := ParseTime(tt.in, now)
		if (err != nil) != tt.err || !got.Equal(tt.want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"now", "-2h", "-1d12h", "2026-01-02T15:04:05Z", "2026-01-02", "+3m"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTime(s, now)
		if err != nil && !got.IsZero() {
			t.Errorf("ParseTime(%q) returned %v with error %v", s, got, err)
		}
	})
}
