// Package profile describes simulated devices as data: the telemetry
// fields a kind of device sends and how their values move, the anomalies
// injected into them, the shadow traffic and the connection behaviour.
// A profile is YAML; greenhouse, fridge and wind are built in.
//
// Generation is deterministic: a device's values, anomalies, disconnects
// and shadow requests are a function of the seed, the device's index and
// its point number only, never of the wall clock or the rate.
package profile

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Profile is one kind of simulated device.
type Profile struct {
	// Name names the profile (the file name of a built-in one).
	Name string `yaml:"name"`
	// Description says what the devices are, for --help and reports.
	Description string `yaml:"description"`
	// Topic is the telemetry topic; {device} is the device id.
	// Default "{profile}/{device}/telemetry".
	Topic string `yaml:"topic"`
	// DevicePrefix prefixes the device index (4 digits at least) to form
	// device ids, which are also the MQTT client ids and thing names.
	// Default the profile name and "-".
	DevicePrefix string `yaml:"device_prefix"`
	// Fields are the telemetry fields, sent in this order after
	// "device", "seq" and "ts".
	Fields []Field `yaml:"fields"`
	// Anomalies configures the injected anomalies.
	Anomalies Anomalies `yaml:"anomalies"`
	// Shadow configures the device shadow traffic.
	Shadow Shadow `yaml:"shadow"`
	// Connection configures disconnects, reconnects and the Last Will.
	Connection Connection `yaml:"connection"`
}

// Field is one telemetry field. A number is
//
//	base + cycle.amplitude*sin(2π·n/cycle.period + phase) + drift + noise
//
// at point n, where base is drawn once per device from Base, phase is
// drawn once per device, drift is a mean-reverting random walk
// (drift ← drift·(1-reversion) + N(0, drift.sd)) and noise is N(0, Noise);
// the result is clamped to [Min, Max] and rounded to Decimals. A bool is
// true with probability P at each point.
type Field struct {
	Name string `yaml:"name"`
	// Type is "number" (the default) or "bool".
	Type string `yaml:"type"`
	// Unit is documentation only.
	Unit     string   `yaml:"unit"`
	Base     Range    `yaml:"base"`
	Noise    float64  `yaml:"noise"`
	Drift    Drift    `yaml:"drift"`
	Cycle    Cycle    `yaml:"cycle"`
	Min      *float64 `yaml:"min"`
	Max      *float64 `yaml:"max"`
	Decimals *int     `yaml:"decimals"`
	P        float64  `yaml:"p"`
}

// Drift is a mean-reverting random walk added to a number field.
type Drift struct {
	// SD is the standard deviation of each step.
	SD float64 `yaml:"sd"`
	// Reversion is the share of the drift removed at each point (0..1).
	Reversion float64 `yaml:"reversion"`
}

// Cycle is a sine wave added to a number field.
type Cycle struct {
	Amplitude float64 `yaml:"amplitude"`
	// Period is the wave's period in points.
	Period float64 `yaml:"period"`
}

// Range is an interval [Min, Max], written in YAML as a number (both
// ends equal), a list [min, max] or a map {min: a, max: b}.
type Range struct {
	Min, Max float64
}

// UnmarshalYAML accepts 3, [2, 4] and {min: 2, max: 4}.
func (r *Range) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		var v float64
		if err := n.Decode(&v); err != nil {
			return err
		}
		*r = Range{v, v}
	case yaml.SequenceNode:
		var v []float64
		if err := n.Decode(&v); err != nil {
			return err
		}
		if len(v) != 2 {
			return fmt.Errorf("line %d: a range is [min, max], got %d numbers", n.Line, len(v))
		}
		*r = Range{v[0], v[1]}
	case yaml.MappingNode:
		var v struct {
			Min *float64 `yaml:"min"`
			Max *float64 `yaml:"max"`
		}
		if err := decodeStrict(n, &v); err != nil {
			return err
		}
		if v.Min == nil || v.Max == nil {
			return fmt.Errorf("line %d: a range needs both min and max", n.Line)
		}
		*r = Range{*v.Min, *v.Max}
	default:
		return fmt.Errorf("line %d: a range is a number, [min, max] or {min: a, max: b}", n.Line)
	}
	return nil
}

func (r Range) valid() bool {
	return isFinite(r.Min) && isFinite(r.Max) && r.Min <= r.Max
}

// Kind names an anomaly kind.
type Kind string

// The anomaly kinds.
const (
	// Spike is one point off by ±magnitude noise standard deviations.
	Spike Kind = "spike"
	// LevelShift adds ±magnitude noise standard deviations to a run of
	// points.
	LevelShift Kind = "level_shift"
	// Stuck repeats the last value sent for a run of points.
	Stuck Kind = "stuck"
)

// Kinds lists every anomaly kind.
var Kinds = []Kind{Spike, LevelShift, Stuck}

// Anomalies configures the anomalies injected into number fields.
type Anomalies struct {
	// Share is the fraction of a device's points (after Warmup) that are
	// anomalous, 0 to 0.5.
	Share float64 `yaml:"share"`
	// Fields are the number fields anomalies go into (default: every
	// number field with noise).
	Fields []string `yaml:"fields"`
	// Warmup is the number of points per device before the first
	// anomaly (default 40, so a detector has learnt the series).
	Warmup *int `yaml:"warmup"`
	// Gap is the smallest number of normal points between two anomalies
	// of one device (default 30).
	Gap *int `yaml:"gap"`
	// Spike, LevelShift and Stuck weigh the kinds (an episode's kind is
	// drawn by weight) and give their sizes.
	Spike      KindConfig `yaml:"spike"`
	LevelShift KindConfig `yaml:"level_shift"`
	Stuck      KindConfig `yaml:"stuck"`

	eligible []int   // indexes of the fields anomalies go into
	start    float64 // probability that an idle point starts an episode
}

// KindConfig is one anomaly kind's weight and size.
type KindConfig struct {
	Weight float64 `yaml:"weight"`
	// Magnitude is in standard deviations of the field's noise (spike,
	// level_shift); the sign is drawn at random.
	Magnitude Range `yaml:"magnitude"`
	// Length is the run's length in points (level_shift, stuck).
	Length Range `yaml:"length"`
}

// Shadow configures device shadow traffic: each device reports its state
// to $aws/things/{device}/shadow/update every ReportEvery points, and
// answers a delta by reporting the delta's state; every DesiredEvery
// points of a device the fleet's operator client sets a desired value
// for it, drawn from Desired, which the service answers with a delta.
type Shadow struct {
	ReportEvery int `yaml:"report_every"`
	// Reported is static reported state (firmware version, ...).
	Reported map[string]any `yaml:"reported"`
	// ReportFields are telemetry fields whose last value is reported too.
	ReportFields []string `yaml:"report_fields"`
	DesiredEvery int      `yaml:"desired_every"`
	// Desired maps a state key to the values the operator chooses from.
	Desired map[string][]any `yaml:"desired"`
}

// Connection configures how devices leave and come back.
type Connection struct {
	// CleanDisconnect and AbruptDisconnect are the probabilities, per
	// point, that a device disconnects after sending it: cleanly
	// (DISCONNECT, no Will) or abruptly (the TCP connection closed
	// without DISCONNECT, so the broker publishes the Will).
	CleanDisconnect  float64 `yaml:"clean_disconnect"`
	AbruptDisconnect float64 `yaml:"abrupt_disconnect"`
	// Offline is how long a device stays away before reconnecting,
	// drawn uniformly (default 1s to 3s).
	Offline DurationRange `yaml:"offline"`
	// BackoffInitial and BackoffMax bound the exponential backoff with
	// full jitter between failed connection attempts (defaults 200ms, 5s).
	BackoffInitial time.Duration `yaml:"backoff_initial"`
	BackoffMax     time.Duration `yaml:"backoff_max"`
	// WillTopic is the Last Will's topic ({device} is the device id);
	// default "{profile}/{device}/status". The Will's payload is
	// {"device":..., "status":"offline", "clean":false}.
	WillTopic string `yaml:"will_topic"`
	// Keepalive is the MQTT keepalive (default 30s).
	Keepalive time.Duration `yaml:"keepalive"`
}

// DurationRange is an interval of durations, [min, max] or {min, max}.
type DurationRange struct {
	Min, Max time.Duration
}

// UnmarshalYAML accepts "2s", ["1s", "3s"] and {min: 1s, max: 3s}.
func (r *DurationRange) UnmarshalYAML(n *yaml.Node) error {
	var v []time.Duration
	switch n.Kind {
	case yaml.ScalarNode:
		var d time.Duration
		if err := n.Decode(&d); err != nil {
			return err
		}
		v = []time.Duration{d, d}
	case yaml.SequenceNode:
		if err := n.Decode(&v); err != nil {
			return err
		}
	case yaml.MappingNode:
		var m struct {
			Min *time.Duration `yaml:"min"`
			Max *time.Duration `yaml:"max"`
		}
		if err := decodeStrict(n, &m); err != nil {
			return err
		}
		if m.Min == nil || m.Max == nil {
			return fmt.Errorf("line %d: a duration range needs both min and max", n.Line)
		}
		v = []time.Duration{*m.Min, *m.Max}
	}
	if len(v) != 2 {
		return fmt.Errorf("line %d: a duration range is a duration, [min, max] or {min: a, max: b}", n.Line)
	}
	*r = DurationRange{v[0], v[1]}
	return nil
}

// decodeStrict decodes a mapping node refusing unknown keys.
func decodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

//go:embed builtin/*.yaml
var builtinFS embed.FS

// Builtin returns the names of the built-in profiles, sorted.
func Builtin() []string {
	ents, _ := builtinFS.ReadDir("builtin")
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	slices.Sort(names)
	return names
}

// BuiltinSource returns the YAML of a built-in profile.
func BuiltinSource(name string) ([]byte, error) {
	b, err := builtinFS.ReadFile(path.Join("builtin", name+".yaml"))
	if err != nil {
		return nil, fmt.Errorf("no built-in profile %q (built in: %s)", name, strings.Join(Builtin(), ", "))
	}
	return b, nil
}

// Load returns the built-in profile called nameOrFile, or parses the
// YAML file at that path (any name ending in .yaml or .yml, or holding
// a path separator, is a file).
func Load(nameOrFile string) (*Profile, error) {
	if strings.HasSuffix(nameOrFile, ".yaml") || strings.HasSuffix(nameOrFile, ".yml") || strings.ContainsRune(nameOrFile, os.PathSeparator) {
		b, err := os.ReadFile(nameOrFile)
		if err != nil {
			return nil, fmt.Errorf("read profile: %w", err)
		}
		p, err := Parse(b)
		if err != nil {
			return nil, fmt.Errorf("profile %s: %w", nameOrFile, err)
		}
		return p, nil
	}
	b, err := BuiltinSource(nameOrFile)
	if err != nil {
		return nil, err
	}
	p, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("built-in profile %s: %w", nameOrFile, err)
	}
	return p, nil
}

// Parse parses and checks a YAML profile, filling in the defaults.
// Unknown keys are errors.
func Parse(b []byte) (*Profile, error) {
	var p Profile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty profile")
		}
		return nil, err
	}
	if err := p.fill(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Recheck checks the profile again after its fields were changed (the
// anomaly settings, say) and recomputes what depends on them.
func (p *Profile) Recheck() error { return p.fill() }

// Device returns the id of device i.
func (p *Profile) Device(i int) string {
	return fmt.Sprintf("%s%04d", p.DevicePrefix, i)
}

// TopicFor returns the telemetry topic of a device.
func (p *Profile) TopicFor(device string) string {
	return strings.ReplaceAll(p.Topic, "{device}", device)
}

// WillTopicFor returns the Last Will topic of a device.
func (p *Profile) WillTopicFor(device string) string {
	return strings.ReplaceAll(p.Connection.WillTopic, "{device}", device)
}

// FieldIndex returns the index of the named field, or -1.
func (p *Profile) FieldIndex(name string) int {
	return slices.IndexFunc(p.Fields, func(f Field) bool { return f.Name == name })
}

func isFinite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
