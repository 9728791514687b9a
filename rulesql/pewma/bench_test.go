package pewma

import (
	"math"
	"testing"
)

// BenchmarkUpdate measures points/s as a processor sees them: decode the
// key's state, score and absorb the point, encode the state again.
func BenchmarkUpdate(b *testing.B) {
	p := DefaultParams()
	xs := make([]float64, 1024)
	for i := range xs {
		xs[i] = 20 + 2*math.Sin(float64(i)/10)
		if i%97 == 0 {
			xs[i] += 15
		}
	}
	enc, _ := State{}.MarshalBinary()
	b.ReportAllocs()
	b.ResetTimer()
	anomalies := 0
	for i := 0; i < b.N; i++ {
		var s State
		if err := s.UnmarshalBinary(enc); err != nil {
			b.Fatal(err)
		}
		if s.Update(p, xs[i&1023]).Anomaly {
			anomalies++
		}
		var err error
		if enc, err = s.MarshalBinary(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
	_ = anomalies
}

// BenchmarkUpdateInMemory is Update alone, the state kept in memory.
func BenchmarkUpdateInMemory(b *testing.B) {
	p := DefaultParams()
	var s State
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.Update(p, 20+float64(i&63)/8)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
}
