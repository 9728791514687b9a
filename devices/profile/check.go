package profile

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Defaults for fields a profile leaves out.
const (
	DefaultDecimals       = 2
	DefaultWarmup         = 40
	DefaultGap            = 30
	DefaultKeepalive      = 30 * time.Second
	DefaultBackoffInitial = 200 * time.Millisecond
	DefaultBackoffMax     = 5 * time.Second
)

// DefaultOffline is how long a disconnected device stays away by default.
var DefaultOffline = DurationRange{time.Second, 3 * time.Second}

// reserved are payload keys every point carries.
var reserved = []string{"device", "seq", "ts"}

// fill sets the defaults and checks the profile, joining every problem
// into one error.
func (p *Profile) fill() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if p.Name == "" {
		bad("name is required")
	} else if !isName(p.Name, "-_") {
		bad("name %q: use letters, digits, - and _", p.Name)
	}
	if p.Topic == "" {
		p.Topic = p.Name + "/{device}/telemetry"
	}
	checkTopic := func(what, t string) {
		if strings.ContainsAny(t, "+#\x00") || strings.HasPrefix(t, "$") || len(t) > 200 {
			bad("%s %q: a topic name without wildcards, not starting with $, at most 200 bytes", what, t)
		}
	}
	checkTopic("topic", p.Topic)
	if p.DevicePrefix == "" {
		p.DevicePrefix = p.Name + "-"
	}
	if !isName(p.DevicePrefix, "-_.:") || len(p.DevicePrefix) > 100 {
		bad("device_prefix %q: use letters, digits and - _ . : (at most 100 bytes)", p.DevicePrefix)
	}
	if len(p.Fields) == 0 {
		bad("fields: at least one field is required")
	}
	seen := map[string]bool{}
	for i := range p.Fields {
		f := &p.Fields[i]
		if err := f.fill(); err != nil {
			bad("field %d (%s): %w", i+1, f.Name, err)
		}
		if seen[f.Name] {
			bad("field %q appears twice", f.Name)
		}
		seen[f.Name] = true
	}
	if err := p.Anomalies.fill(p); err != nil {
		bad("anomalies: %w", err)
	}
	if err := p.Shadow.check(p); err != nil {
		bad("shadow: %w", err)
	}
	c := &p.Connection
	if !prob(c.CleanDisconnect) || !prob(c.AbruptDisconnect) || c.CleanDisconnect+c.AbruptDisconnect > 1 {
		bad("connection: clean_disconnect and abrupt_disconnect are probabilities per point, together at most 1")
	}
	if c.Offline == (DurationRange{}) {
		c.Offline = DefaultOffline
	}
	if c.Offline.Min < 0 || c.Offline.Min > c.Offline.Max {
		bad("connection: offline must be min <= max, not negative")
	}
	if c.BackoffInitial == 0 {
		c.BackoffInitial = DefaultBackoffInitial
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.BackoffInitial < 0 || c.BackoffMax < c.BackoffInitial {
		bad("connection: backoff_initial must be positive and at most backoff_max")
	}
	if c.WillTopic == "" {
		c.WillTopic = p.Name + "/{device}/status"
	}
	checkTopic("connection: will_topic", c.WillTopic)
	if c.Keepalive == 0 {
		c.Keepalive = DefaultKeepalive
	}
	if c.Keepalive < time.Second || c.Keepalive > 65535*time.Second {
		bad("connection: keepalive must be between 1s and 65535s")
	}
	return errors.Join(errs...)
}

func (f *Field) fill() error {
	if f.Name == "" || !isName(f.Name, "_") {
		return fmt.Errorf("name %q: use letters, digits and _", f.Name)
	}
	for _, r := range reserved {
		if f.Name == r {
			return fmt.Errorf("name %q is the point's own key (%s)", f.Name, strings.Join(reserved, ", "))
		}
	}
	switch f.Type {
	case "", "number":
		f.Type = "number"
	case "bool":
		if f.Base != (Range{}) || f.Noise != 0 || f.Drift != (Drift{}) || f.Cycle != (Cycle{}) || f.Min != nil || f.Max != nil || f.Decimals != nil {
			return errors.New("a bool field has only p (the probability of true)")
		}
		if !prob(f.P) {
			return fmt.Errorf("p %v must be between 0 and 1", f.P)
		}
		return nil
	default:
		return fmt.Errorf("type %q: number or bool", f.Type)
	}
	if f.P != 0 {
		return errors.New("p is for bool fields")
	}
	if !f.Base.valid() {
		return errors.New("base must be a finite range with min <= max")
	}
	if !isFinite(f.Noise) || f.Noise < 0 || !isFinite(f.Drift.SD) || f.Drift.SD < 0 {
		return errors.New("noise and drift.sd must be finite and not negative")
	}
	if !prob(f.Drift.Reversion) {
		return errors.New("drift.reversion must be between 0 and 1")
	}
	if !isFinite(f.Cycle.Amplitude) || !isFinite(f.Cycle.Period) || f.Cycle.Period < 0 || (f.Cycle.Amplitude != 0 && f.Cycle.Period < 2) {
		return errors.New("cycle: amplitude must be finite and period (points) at least 2 when amplitude is set")
	}
	if (f.Min != nil && !isFinite(*f.Min)) || (f.Max != nil && !isFinite(*f.Max)) || (f.Min != nil && f.Max != nil && *f.Min > *f.Max) {
		return errors.New("min and max must be finite, min <= max")
	}
	if f.Decimals == nil {
		d := DefaultDecimals
		f.Decimals = &d
	}
	if *f.Decimals < 0 || *f.Decimals > 9 {
		return errors.New("decimals must be between 0 and 9")
	}
	return nil
}

func (a *Anomalies) fill(p *Profile) error {
	if !isFinite(a.Share) || a.Share < 0 || a.Share > 0.5 {
		return fmt.Errorf("share %v must be between 0 and 0.5", a.Share)
	}
	if a.Warmup == nil {
		w := DefaultWarmup
		a.Warmup = &w
	}
	if a.Gap == nil {
		g := DefaultGap
		a.Gap = &g
	}
	if *a.Warmup < 0 || *a.Gap < 0 {
		return errors.New("warmup and gap must not be negative")
	}
	a.eligible = a.eligible[:0]
	if len(a.Fields) == 0 {
		for i, f := range p.Fields {
			if f.Type == "number" && f.Noise > 0 {
				a.eligible = append(a.eligible, i)
			}
		}
	}
	for _, name := range a.Fields {
		i := p.FieldIndex(name)
		if i < 0 {
			return fmt.Errorf("fields: no field %q", name)
		}
		if p.Fields[i].Type != "number" || p.Fields[i].Noise <= 0 {
			return fmt.Errorf("fields: %q must be a number field with noise (magnitudes are in noise standard deviations)", name)
		}
		a.eligible = append(a.eligible, i)
	}
	for _, k := range []struct {
		name   Kind
		c      *KindConfig
		mag    bool
		length bool
	}{{Spike, &a.Spike, true, false}, {LevelShift, &a.LevelShift, true, true}, {Stuck, &a.Stuck, false, true}} {
		c := k.c
		if !isFinite(c.Weight) || c.Weight < 0 {
			return fmt.Errorf("%s: weight must not be negative", k.name)
		}
		if c.Weight == 0 {
			continue
		}
		if k.mag && (!c.Magnitude.valid() || c.Magnitude.Min <= 0) {
			return fmt.Errorf("%s: magnitude must be a range of positive numbers (noise standard deviations)", k.name)
		}
		if !k.mag && c.Magnitude != (Range{}) {
			return fmt.Errorf("%s: has no magnitude", k.name)
		}
		if !k.length {
			if c.Length != (Range{}) && c.Length != (Range{1, 1}) {
				return fmt.Errorf("%s: is one point long; it has no length", k.name)
			}
			c.Length = Range{1, 1}
		}
		if !c.Length.valid() || c.Length.Min < 1 || c.Length.Max > 1e6 || c.Length.Min != math.Trunc(c.Length.Min) || c.Length.Max != math.Trunc(c.Length.Max) {
			return fmt.Errorf("%s: length must be whole numbers of points, 1 to 1000000", k.name)
		}
	}
	w := a.Spike.Weight + a.LevelShift.Weight + a.Stuck.Weight
	a.start = 0
	if a.Share == 0 {
		return nil
	}
	if len(a.eligible) == 0 {
		return errors.New("share is set but no number field has noise to size anomalies by")
	}
	if w == 0 {
		return errors.New("share is set but no kind (spike, level_shift, stuck) has a weight")
	}
	// A device's points cycle through: gap points after an episode, then
	// points that each start an episode with probability q (the starting
	// point is the episode's first), then the episode of mean length L.
	// The anomalous share is L / (gap + (1-q)/q + L); solve for q.
	meanLen := 0.0
	for _, c := range []KindConfig{a.Spike, a.LevelShift, a.Stuck} {
		meanLen += c.Weight / w * (c.Length.Min + c.Length.Max) / 2
	}
	idle := meanLen/a.Share - meanLen - float64(*a.Gap)
	if idle < 0 {
		return fmt.Errorf("share %v cannot be reached with gap %d and a mean episode of %.1f points: lower gap or share",
			a.Share, *a.Gap, meanLen)
	}
	a.start = 1 / (1 + idle)
	return nil
}

func (s *Shadow) check(p *Profile) error {
	if s.ReportEvery < 0 || s.DesiredEvery < 0 {
		return errors.New("report_every and desired_every must not be negative")
	}
	for _, name := range s.ReportFields {
		if p.FieldIndex(name) < 0 {
			return fmt.Errorf("report_fields: no field %q", name)
		}
	}
	if s.DesiredEvery > 0 && len(s.Desired) == 0 {
		return errors.New("desired_every is set but desired has no keys to choose values for")
	}
	for k, vs := range s.Desired {
		if k == "" || len(vs) == 0 {
			return fmt.Errorf("desired: key %q needs a non-empty list of values", k)
		}
	}
	return nil
}

func prob(f float64) bool { return f >= 0 && f <= 1 }

// isName reports whether s is non-empty and made of ASCII letters,
// digits and the extra characters.
func isName(s, extra string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(extra, r)) {
			return false
		}
	}
	return true
}
