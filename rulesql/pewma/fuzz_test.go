package pewma

import (
	"bytes"
	"math"
	"testing"
)

func FuzzUnmarshalBinary(f *testing.F) {
	for _, s := range []State{{}, {T: 1, S1: 20, S2: 400}, {T: 1 << 40, S1: -3.5, S2: 1e300}} {
		b, _ := s.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s State
		if err := s.UnmarshalBinary(b); err != nil {
			if s != (State{}) {
				t.Fatalf("state changed on error: %+v", s)
			}
			return
		}
		out, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("marshal a decoded state: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip % x -> % x", b, out)
		}
	})
}

func FuzzUpdate(f *testing.F) {
	f.Add(int64(0), 0.0, 0.0, 21.3, 0.95, 0.5, 30, 0.002)
	f.Add(int64(50), 20.0, 401.0, 35.0, 0.95, 0.5, 30, 0.002)
	f.Add(int64(5), 1e200, 1e300, -1e150, 0.5, 1.0, 1, 1e-9)
	f.Add(int64(5), 1.0, 1.0, math.NaN(), 0.5, 1.0, 1, 1e-9)
	f.Fuzz(func(t *testing.T, n int64, s1, s2, x, alpha0, beta float64, T int, threshold float64) {
		p := Params{Alpha0: alpha0, Beta: beta, T: T, Threshold: threshold}
		if p.Validate() != nil {
			return
		}
		b, _ := State{T: n, S1: s1, S2: s2}.MarshalBinary()
		var s State
		if s.UnmarshalBinary(b) != nil || s.T == math.MaxInt64 {
			return // only states a detector can be in
		}
		before := s
		r := s.Update(p, x)
		finite := !math.IsNaN(x*x) && !math.IsInf(x*x, 0)
		if r.Skipped == finite {
			t.Fatalf("Update(%v): Skipped = %v", x, r.Skipped)
		}
		if r.Skipped {
			if s != before || r != (Result{Skipped: true}) {
				t.Fatalf("skipped point changed things: %+v -> %+v, %+v", before, s, r)
			}
			return
		}
		if s.T != before.T+1 {
			t.Fatalf("T %d -> %d", before.T, s.T)
		}
		for name, v := range map[string]float64{"S1": s.S1, "S2": s.S2, "mean": r.Mean, "std": r.Std, "probability": r.Probability} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				t.Fatalf("%s = %v (state %+v, x %v)", name, v, before, x)
			}
		}
		if r.Probability < 0 || r.Probability > invSqrt2Pi || r.Std < 0 {
			t.Fatalf("probability %v std %v out of range", r.Probability, r.Std)
		}
		if r.Anomaly && (s.T <= int64(p.T) || r.Probability > p.Threshold) {
			t.Fatalf("anomaly with t=%d P=%v", s.T, r.Probability)
		}
		var again State
		if err := again.UnmarshalBinary(mustMarshal(t, s)); err != nil || again != s {
			t.Fatalf("updated state does not round trip: %v %+v", err, again)
		}
	})
}

func mustMarshal(t *testing.T, s State) []byte {
	t.Helper()
	b, err := s.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
