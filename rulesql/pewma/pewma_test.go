package pewma

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestConstants(t *testing.T) {
	if sqrt2Pi != math.Sqrt(2*math.Pi) {
		t.Errorf("sqrt2Pi = %v, math.Sqrt(2*math.Pi) = %v", sqrt2Pi, math.Sqrt(2*math.Pi))
	}
	if invSqrt2Pi != 1/math.Sqrt(2*math.Pi) {
		t.Errorf("invSqrt2Pi = %v, want %v", invSqrt2Pi, 1/math.Sqrt(2*math.Pi))
	}
}

func TestDefaultParams(t *testing.T) {
	p := DefaultParams()
	if p != (Params{Alpha0: 0.95, Beta: 0.5, T: 30, Threshold: 0.002}) {
		t.Fatalf("DefaultParams() = %+v", p)
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	// 0.002 is "about 3.25 sigma".
	if z := p.ZThreshold(); math.Abs(z-3.2537) > 1e-3 {
		t.Errorf("ZThreshold() = %v, want about 3.2537", z)
	}
}

func TestValidate(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name    string
		mutate  func(*Params)
		wantErr string // substring naming the bad parameter; "" = valid
	}{
		{"defaults", func(*Params) {}, ""},
		{"beta 0 is plain EWMA", func(p *Params) { p.Beta = 0 }, ""},
		{"beta 1", func(p *Params) { p.Beta = 1 }, ""},
		{"T 1", func(p *Params) { p.T = 1 }, ""},
		{"threshold tiny", func(p *Params) { p.Threshold = 1e-12 }, ""},
		{"alpha0 0", func(p *Params) { p.Alpha0 = 0 }, "alpha0"},
		{"alpha0 1", func(p *Params) { p.Alpha0 = 1 }, "alpha0"},
		{"alpha0 NaN", func(p *Params) { p.Alpha0 = nan }, "alpha0"},
		{"beta negative", func(p *Params) { p.Beta = -0.1 }, "beta"},
		{"beta above 1", func(p *Params) { p.Beta = 1.5 }, "beta"},
		{"beta NaN", func(p *Params) { p.Beta = nan }, "beta"},
		{"T 0", func(p *Params) { p.T = 0 }, "T ="},
		{"T negative", func(p *Params) { p.T = -3 }, "T ="},
		{"threshold 0", func(p *Params) { p.Threshold = 0 }, "threshold"},
		{"threshold at peak density", func(p *Params) { p.Threshold = invSqrt2Pi }, "threshold"},
		{"threshold NaN", func(p *Params) { p.Threshold = nan }, "threshold"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := DefaultParams()
			tt.mutate(&p)
			err := p.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate(%+v) = %v, want nil", p, err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate(%+v) = nil, want error about %s", p, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Validate(%+v) = %v, want it to name %s", p, err, tt.wantErr)
			}
		})
	}
}

func TestUpdateSkipsNonFinite(t *testing.T) {
	p := DefaultParams()
	s := State{T: 40, S1: 20, S2: 404}
	for _, x := range []float64{math.NaN(), math.Inf(1), math.Inf(-1), 1e200, -1e200} {
		before := s
		r := s.Update(p, x)
		if r != (Result{Skipped: true}) {
			t.Errorf("Update(%v) = %+v, want only Skipped", x, r)
		}
		if s != before {
			t.Errorf("Update(%v) changed the state: %+v -> %+v", x, before, s)
		}
	}
	// A large but squarable value is scored, and is an anomaly.
	if r := s.Update(p, 1e150); r.Skipped || !r.Anomaly {
		t.Errorf("Update(1e150) = %+v, want scored as an anomaly", r)
	}
}

func TestUpdateScoresBeforeUpdating(t *testing.T) {
	p := Params{Alpha0: 0.9, Beta: 0, T: 2, Threshold: 0.002}
	var s State
	steps := []struct {
		x                       float64
		mean, std, z            float64
		anomaly                 bool
		wantT                   int64
		wantS1, wantS2, epsilon float64
	}{
		// t=1: mu = x, sigma 0; alpha 0 -> s1 = x.
		{x: 10, mean: 10, std: 0, z: 0, wantT: 1, wantS1: 10, wantS2: 100},
		// t=2: scored against (10, 0); alpha 1/2.
		{x: 12, mean: 10, std: 0, z: 0, wantT: 2, wantS1: 11, wantS2: 122},
		// t=3 > T: scored against mean 11, std 1; beta 0 -> alpha 0.9.
		{x: 20, mean: 11, std: 1, z: 9, anomaly: true, wantT: 3, wantS1: 11.9, wantS2: 149.8},
	}
	for i, st := range steps {
		r := s.Update(p, st.x)
		if r.Mean != st.mean || r.Std != st.std || r.Z != st.z || r.Anomaly != st.anomaly {
			t.Fatalf("step %d: %+v, want mean %v std %v z %v anomaly %v", i, r, st.mean, st.std, st.z, st.anomaly)
		}
		if s.T != st.wantT || math.Abs(s.S1-st.wantS1) > 1e-12 || math.Abs(s.S2-st.wantS2) > 1e-9 {
			t.Fatalf("step %d: state %+v, want T %d S1 %v S2 %v", i, s, st.wantT, st.wantS1, st.wantS2)
		}
		z := p.ZThreshold()
		if r.Lower != st.mean-z*st.std || r.Upper != st.mean+z*st.std {
			t.Fatalf("step %d: band [%v, %v]", i, r.Lower, r.Upper)
		}
	}
}

func TestMarshalBinary(t *testing.T) {
	s := State{T: 0x0102030405060708, S1: 1.5, S2: math.Copysign(0, -1)}
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
		0, 0, 0, 0, 0, 0, 0xf8, 0x3f,
		0, 0, 0, 0, 0, 0, 0, 0x80,
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("MarshalBinary = % x, want % x", b, want)
	}
	var got State
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if got.T != s.T || math.Float64bits(got.S1) != math.Float64bits(s.S1) || math.Float64bits(got.S2) != math.Float64bits(s.S2) {
		t.Fatalf("round trip %+v, want %+v", got, s)
	}
}

func TestUnmarshalBinaryRejects(t *testing.T) {
	enc := func(s State) []byte { b, _ := s.MarshalBinary(); return b }
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", make([]byte, 23)},
		{"long", make([]byte, 25)},
		{"negative T", enc(State{T: -1})},
		{"NaN S1", enc(State{S1: math.NaN()})},
		{"Inf S2", enc(State{S2: math.Inf(1)})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := State{T: 7, S1: 1, S2: 2}
			err := s.UnmarshalBinary(tt.b)
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("UnmarshalBinary = %v, want a corrupt-state error", err)
			}
			if s != (State{T: 7, S1: 1, S2: 2}) {
				t.Fatalf("state changed on error: %+v", s)
			}
		})
	}
}
