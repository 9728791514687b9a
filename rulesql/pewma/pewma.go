// Package pewma implements the Probabilistic Exponentially Weighted Moving
// Average anomaly detector (Carter and Streilein, "Probabilistic reasoning
// for streaming anomaly detection", IEEE SSP 2012) exactly as defined in
// the project's PEWMA specification (shared/pewma/SPEC.md).
//
// A detector is a tiny State (points absorbed and two moments) per
// (thing, field) plus Params shared by every key of a rule. State.Update
// scores one observation against the state before it, then absorbs it:
//
//	p := pewma.DefaultParams()
//	var s pewma.State
//	for _, x := range series {
//		r := s.Update(p, x)
//		if r.Anomaly {
//			// x lies outside [r.Lower, r.Upper]
//		}
//	}
//
// The State encodes to a fixed 24-byte value (MarshalBinary) so it can be
// kept in the partition's state store and survive restarts: continuing from
// a decoded state gives bit-for-bit the numbers of an uninterrupted run.
package pewma

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// sqrt2Pi is the float64 nearest sqrt(2*pi), the value math.Sqrt(2*math.Pi)
// returns (a test checks it); invSqrt2Pi is the normal density at Z = 0.
const (
	sqrt2Pi    = 2.5066282746310002
	invSqrt2Pi = 0.3989422804014327
)

// Params are a detector's settings; every key of a rule shares them.
type Params struct {
	// Alpha0 is the weight on history once training is over: closer to 1
	// means a smoother mean. Must be in (0, 1). Default 0.95.
	Alpha0 float64
	// Beta (0..1) is how much an unlikely point is kept from moving the
	// mean; 0 gives a plain EWMA. Default 0.5.
	Beta float64
	// T is the number of training points: up to and including the T-th
	// point the state is the exact running mean and variance; PEWMA
	// weighting (and anomaly flagging) starts after. Must be >= 1.
	// Default 30.
	T int
	// Threshold is the normal density at or below which a point is an
	// anomaly. Must be in (0, 1/sqrt(2*pi)). Default 0.002 (|Z| >= ~3.25).
	Threshold float64
}

// DefaultParams returns the specification's defaults: Alpha0 0.95, Beta
// 0.5, T 30, Threshold 0.002.
func DefaultParams() Params {
	return Params{Alpha0: 0.95, Beta: 0.5, T: 30, Threshold: 0.002}
}

// Validate reports the first parameter out of its range, naming it and
// the accepted range.
func (p Params) Validate() error {
	switch {
	case !(p.Alpha0 > 0 && p.Alpha0 < 1):
		return fmt.Errorf("pewma: alpha0 = %v: must be strictly between 0 and 1", p.Alpha0)
	case !(p.Beta >= 0 && p.Beta <= 1):
		return fmt.Errorf("pewma: beta = %v: must be between 0 and 1", p.Beta)
	case p.T < 1:
		return fmt.Errorf("pewma: T = %d: must be at least 1 training point", p.T)
	case !(p.Threshold > 0 && p.Threshold < invSqrt2Pi):
		return fmt.Errorf("pewma: threshold = %v: must be strictly between 0 and %v (the normal density at its peak)", p.Threshold, invSqrt2Pi)
	}
	return nil
}

// ZThreshold returns the |Z| at which a point becomes an anomaly:
// sqrt(-2 ln(Threshold*sqrt(2*pi))), about 3.25 for the default 0.002.
// The band Result.Lower..Result.Upper is mean -/+ ZThreshold*std.
func (p Params) ZThreshold() float64 {
	return math.Sqrt(-2 * math.Log(p.Threshold*sqrt2Pi))
}

// State is one detector's state: the points absorbed (T) and the first
// and second moments (S1, S2). The zero State is a fresh detector.
type State struct {
	// T is the number of finite points absorbed so far.
	T int64
	// S1 is the weighted first moment (the mean).
	S1 float64
	// S2 is the weighted second moment; the variance is S2 - S1^2.
	S2 float64
}

// Result is how one observation scored, against the state before it.
type Result struct {
	// Mean and Std are the prediction the point was scored against (the
	// state before the update).
	Mean, Std float64
	// Z is (x - Mean) / Std, or 0 when Std is 0.
	Z float64
	// Probability is the normal density at Z: exp(-Z^2/2)/sqrt(2*pi),
	// at most 0.3989...
	Probability float64
	// Anomaly is true when training is over and Probability <= Threshold.
	Anomaly bool
	// Skipped is true when x was NaN or infinite (or so large that its
	// square overflows): the state was left unchanged and every other
	// field is zero.
	Skipped bool
	// Lower and Upper bound the normal band: Mean -/+ ZThreshold*Std.
	Lower, Upper float64
}

// Update scores x against the state, then absorbs it (SPEC.md steps 1-7).
// A non-finite x, or one whose square is not finite, leaves the state
// unchanged and returns a Result with only Skipped set. Update does not
// validate p; callers validate Params once (Validate) when they build them.
func (s *State) Update(p Params, x float64) Result {
	sq := x * x
	if math.IsNaN(sq) || math.IsInf(sq, 0) {
		return Result{Skipped: true}
	}
	t := s.T + 1
	var mu, sigma float64
	if t == 1 {
		mu = x
	} else {
		mu = s.S1
		sigma = math.Sqrt(math.Max(s.S2-s.S1*s.S1, 0))
	}
	var z float64
	if sigma > 0 {
		z = (x - mu) / sigma
	}
	prob := math.Exp(-z*z/2) / sqrt2Pi
	a := alpha(p, t, prob)
	s.T = t
	s.S1 = a*s.S1 + (1-a)*x
	s.S2 = a*s.S2 + (1-a)*sq
	band := p.ZThreshold() * sigma
	return Result{
		Mean:        mu,
		Std:         sigma,
		Z:           z,
		Probability: prob,
		Anomaly:     t > int64(p.T) && prob <= p.Threshold,
		Lower:       mu - band,
		Upper:       mu + band,
	}
}

// alpha is the weight on history for the t-th point (SPEC.md step 5):
// exact running moments while training, PEWMA weighting after.
func alpha(p Params, t int64, prob float64) float64 {
	if t <= int64(p.T) {
		return 1 - 1/float64(t)
	}
	return p.Alpha0 * (1 - p.Beta*prob)
}

// stateSize is the length of a State's binary encoding.
const stateSize = 24

// errCorrupt is wrapped by UnmarshalBinary's errors.
var errCorrupt = errors.New("pewma: corrupt state")

// MarshalBinary encodes the state in 24 bytes, little endian: T (int64),
// then the IEEE 754 bits of S1 and S2, so a decoded state is exact.
func (s State) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(make([]byte, 0, stateSize))
}

// AppendBinary appends what MarshalBinary returns to b.
func (s State) AppendBinary(b []byte) ([]byte, error) {
	b = binary.LittleEndian.AppendUint64(b, uint64(s.T))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(s.S1))
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(s.S2)), nil
}

// UnmarshalBinary decodes what MarshalBinary wrote. It rejects a value of
// the wrong length, a negative T and non-finite moments (no sequence of
// Updates produces them), leaving s unchanged.
func (s *State) UnmarshalBinary(b []byte) error {
	if len(b) != stateSize {
		return fmt.Errorf("%w: %d bytes, want %d", errCorrupt, len(b), stateSize)
	}
	t := int64(binary.LittleEndian.Uint64(b[0:]))
	s1 := math.Float64frombits(binary.LittleEndian.Uint64(b[8:]))
	s2 := math.Float64frombits(binary.LittleEndian.Uint64(b[16:]))
	if t < 0 {
		return fmt.Errorf("%w: negative point count %d", errCorrupt, t)
	}
	if math.IsNaN(s1) || math.IsInf(s1, 0) || math.IsNaN(s2) || math.IsInf(s2, 0) {
		return fmt.Errorf("%w: non-finite moments (%v, %v)", errCorrupt, s1, s2)
	}
	s.T, s.S1, s.S2 = t, s1, s2
	return nil
}
