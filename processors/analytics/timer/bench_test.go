package timer

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkObserve is the per-event cost of a duration condition: 1000
// keys, the condition true for 9 events in 10 (so episodes start, hold,
// end and sometimes fire), a Fire every 1000 events.
func BenchmarkObserve(b *testing.B) {
	st := newMemStore()
	tm := newTimers(b, Config{For: 5 * time.Second, Resolve: true})
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("thing-%04d", i)
	}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	fired := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now := t0.Add(time.Duration(i) * time.Millisecond)
		evs, err := tm.Observe(st, keys[i%len(keys)], (i/len(keys))%10 != 9, now)
		if err != nil {
			b.Fatal(err)
		}
		fired += len(evs)
		if i%1000 == 999 {
			evs, err := tm.Fire(st, now)
			if err != nil {
				b.Fatal(err)
			}
			fired += len(evs)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "observations/s")
	if b.N > 100_000 && fired == 0 {
		b.Fatal("nothing fired")
	}
}
