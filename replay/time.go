package replay

import (
	"fmt"
	"strings"
	"time"
)

// ParseTime parses a time given on the command line or in a query:
// RFC 3339 (2026-01-02T15:04:05Z, fractions and offsets allowed), a
// date (2026-01-02, UTC midnight), "now", or a time relative to now: a
// signed Go duration with d for days ("-2h", "-90m", "-1d12h").
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return time.Time{}, fmt.Errorf("empty time: want RFC 3339 (2026-01-02T15:04:05Z), a date, now, or a relative time (-2h)")
	case s == "now":
		return now, nil
	case s[0] == '-' || s[0] == '+':
		d, err := parseDuration(s)
		if err != nil {
			return time.Time{}, fmt.Errorf("relative time %q: %w", s, err)
		}
		return now.Add(d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02), now, or a relative time (-2h, -1d)", s)
}

// parseDuration is time.ParseDuration with days ("1d" is 24h) before
// the other units.
func parseDuration(s string) (time.Duration, error) {
	sign := time.Duration(1)
	if s[0] == '-' || s[0] == '+' {
		if s[0] == '-' {
			sign = -1
		}
		s = s[1:]
	}
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := time.ParseDuration(s[:i] + "h")
		if err != nil || strings.ContainsAny(s[:i], ".hms") {
			return 0, fmt.Errorf("bad day count %q", s[:i])
		}
		days, s = 24*n, s[i+1:]
		if s == "" {
			return sign * days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("want a duration such as 2h, 90m or 1d12h")
	}
	return sign * (days + d), nil
}
