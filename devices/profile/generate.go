package profile

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// Stream names one of a device's independent random streams, so that
// changing one aspect of a profile (the anomalies, say) leaves the
// others' draws alone.
type Stream uint64

// The streams of a device.
const (
	// StreamValues draws the normal telemetry values.
	StreamValues Stream = iota
	// StreamAnomalies decides when anomalies start and what they are.
	StreamAnomalies
	// StreamBehaviour decides disconnects and desired shadow values,
	// per point.
	StreamBehaviour
	// StreamTiming draws offline periods and backoff jitter, which
	// depend on how often connecting fails, so on the wall clock.
	StreamTiming
)

// Rand returns the random source of one stream of one device.
func Rand(seed uint64, device int, s Stream) *rand.Rand {
	return rand.New(rand.NewPCG(splitmix(seed), splitmix(uint64(device)<<8|uint64(s))))
}

// splitmix is SplitMix64's finaliser: nearby inputs give unrelated
// outputs, so nearby seeds give unrelated streams.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// Disconnect says whether a device leaves after sending a point.
type Disconnect int

// The ways a device leaves.
const (
	Stay Disconnect = iota
	// Clean sends DISCONNECT (no Will).
	Clean
	// Abrupt closes the TCP connection (the broker publishes the Will).
	Abrupt
)

func (d Disconnect) String() string {
	return [...]string{"stay", "clean", "abrupt"}[d]
}

// Point is one telemetry message of one device.
type Point struct {
	// Seq numbers a device's points from 0.
	Seq uint64
	// Values holds the fields' values in the profile's order (a bool is
	// 0 or 1), as sent.
	Values []float64
	// Anomaly is set when the point carries an injected anomaly.
	Anomaly *Anomaly
	// ReportShadow says the device reports its shadow state after this
	// point.
	ReportShadow bool
	// Desired, when not nil, is the desired state the operator sets for
	// the device after this point.
	Desired map[string]any
	// Disconnect says whether the device leaves after this point.
	Disconnect Disconnect
}

// Anomaly is what was injected into one point.
type Anomaly struct {
	Kind  Kind   `json:"kind"`
	Field string `json:"metric"`
	// Value is the value sent; Expected is the value the point would
	// have had without the anomaly.
	Value    float64 `json:"value"`
	Expected float64 `json:"expected"`
	// Episode numbers the device's anomalies from 1; Index is the
	// point's position in its episode (from 0; a spike has only 0).
	Episode int `json:"episode"`
	Index   int `json:"index"`
}

// Generator produces the points of one device.
type Generator struct {
	p        *Profile
	vals     *rand.Rand
	anom     *rand.Rand
	behave   *rand.Rand
	base     []float64
	phase    []float64
	drift    []float64
	last     []float64
	n        uint64
	gap      int
	ep       *episode
	episodes int
	desired  []string // the desired keys, sorted
}

type episode struct {
	kind   Kind
	field  int
	left   int
	index  int
	offset float64 // spike and level shift: signed, in the field's units
	value  float64 // stuck: the value repeated
}

// NewGenerator returns the generator of device i for a seed.
func (p *Profile) NewGenerator(seed uint64, device int) *Generator {
	g := &Generator{
		p:      p,
		vals:   Rand(seed, device, StreamValues),
		anom:   Rand(seed, device, StreamAnomalies),
		behave: Rand(seed, device, StreamBehaviour),
		base:   make([]float64, len(p.Fields)),
		phase:  make([]float64, len(p.Fields)),
		drift:  make([]float64, len(p.Fields)),
		last:   make([]float64, len(p.Fields)),
	}
	for i, f := range p.Fields {
		g.base[i] = f.Base.Min + g.vals.Float64()*(f.Base.Max-f.Base.Min)
		g.phase[i] = g.vals.Float64() * 2 * math.Pi
	}
	for k := range p.Shadow.Desired {
		g.desired = append(g.desired, k)
	}
	slices.Sort(g.desired)
	return g
}

// Next returns the device's next point.
func (g *Generator) Next() Point {
	p := g.p
	pt := Point{Seq: g.n, Values: make([]float64, len(p.Fields))}
	g.n++
	for i := range p.Fields {
		pt.Values[i] = g.normal(i, pt.Seq)
	}
	if a := g.inject(&pt); a != nil {
		pt.Anomaly = a
	}
	copy(g.last, pt.Values)

	s := p.Shadow
	pt.ReportShadow = s.ReportEvery > 0 && (pt.Seq+1)%uint64(s.ReportEvery) == 0
	if s.DesiredEvery > 0 && (pt.Seq+1)%uint64(s.DesiredEvery) == 0 {
		pt.Desired = map[string]any{}
		for _, k := range g.desired {
			vs := s.Desired[k]
			pt.Desired[k] = vs[g.behave.IntN(len(vs))]
		}
	}
	c := p.Connection
	switch u := g.behave.Float64(); {
	case u < c.CleanDisconnect:
		pt.Disconnect = Clean
	case u < c.CleanDisconnect+c.AbruptDisconnect:
		pt.Disconnect = Abrupt
	}
	return pt
}

// normal draws field i's value at point n without anomalies. It always
// takes the same draws, so one field's settings never shift another's.
func (g *Generator) normal(i int, n uint64) float64 {
	f := &g.p.Fields[i]
	if f.Type == "bool" {
		if g.vals.Float64() < f.P {
			return 1
		}
		return 0
	}
	step, noise := g.vals.NormFloat64(), g.vals.NormFloat64()
	g.drift[i] = g.drift[i]*(1-f.Drift.Reversion) + step*f.Drift.SD
	v := g.base[i] + g.drift[i] + noise*f.Noise
	if f.Cycle.Amplitude != 0 {
		v += f.Cycle.Amplitude * math.Sin(2*math.Pi*float64(n)/f.Cycle.Period+g.phase[i])
	}
	return f.finish(v)
}

// finish clamps v to the field's bounds and rounds it to its decimals.
func (f *Field) finish(v float64) float64 {
	if f.Min != nil {
		v = max(v, *f.Min)
	}
	if f.Max != nil {
		v = min(v, *f.Max)
	}
	scale := math.Pow(10, float64(*f.Decimals))
	return math.Round(v*scale) / scale
}

// inject starts, continues or ends the device's anomaly episode and
// applies it to pt.
func (g *Generator) inject(pt *Point) *Anomaly {
	a := &g.p.Anomalies
	if g.ep == nil {
		if a.start == 0 || pt.Seq < uint64(*a.Warmup) {
			return nil
		}
		if g.gap > 0 {
			g.gap--
			return nil
		}
		if g.anom.Float64() >= a.start {
			return nil
		}
		g.ep = g.newEpisode()
	}
	ep := g.ep
	f := &g.p.Fields[ep.field]
	expected := pt.Values[ep.field]
	var v float64
	switch ep.kind {
	case Stuck:
		v = ep.value
	case Spike:
		// A spike goes the way that stays inside the field's bounds.
		off := ep.offset
		if f.Max != nil && expected+off > *f.Max || f.Min != nil && expected+off < *f.Min {
			off = -off
		}
		v = f.finish(expected + off)
	default:
		v = f.finish(expected + ep.offset)
	}
	pt.Values[ep.field] = v
	an := &Anomaly{Kind: ep.kind, Field: f.Name, Value: v, Expected: expected, Episode: g.episodes, Index: ep.index}
	ep.index++
	ep.left--
	if ep.left == 0 {
		g.ep = nil
		g.gap = *a.Gap
	}
	return an
}

func (g *Generator) newEpisode() *episode {
	a := &g.p.Anomalies
	kinds := []KindConfig{a.Spike, a.LevelShift, a.Stuck}
	total := a.Spike.Weight + a.LevelShift.Weight + a.Stuck.Weight
	u := g.anom.Float64() * total
	k := 0
	for k < len(kinds)-1 && (u >= kinds[k].Weight || kinds[k].Weight == 0) {
		u -= kinds[k].Weight
		k++
	}
	c := kinds[k]
	ep := &episode{kind: Kinds[k], field: a.eligible[g.anom.IntN(len(a.eligible))]}
	lo, hi := int(c.Length.Min), int(c.Length.Max)
	ep.left = lo + g.anom.IntN(hi-lo+1)
	mag := c.Magnitude.Min + g.anom.Float64()*(c.Magnitude.Max-c.Magnitude.Min)
	if g.anom.IntN(2) == 0 {
		mag = -mag
	}
	ep.offset = mag * g.p.Fields[ep.field].Noise
	ep.value = g.last[ep.field]
	g.episodes++
	return ep
}

// AppendPayload appends the JSON payload of a point:
// {"device":"wind-0001","seq":12,"ts":<Unix ms>,"wind_speed":8.12,...}.
func (p *Profile) AppendPayload(b []byte, device string, pt *Point, ts time.Time) []byte {
	b = append(b, `{"device":`...)
	b = strconv.AppendQuote(b, device)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, pt.Seq, 10)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ts.UnixMilli(), 10)
	for i, f := range p.Fields {
		b = append(b, ',', '"')
		b = append(b, f.Name...)
		b = append(b, '"', ':')
		if f.Type == "bool" {
			b = strconv.AppendBool(b, pt.Values[i] != 0)
		} else {
			b = strconv.AppendFloat(b, pt.Values[i], 'f', *f.Decimals, 64)
		}
	}
	return append(b, '}')
}
