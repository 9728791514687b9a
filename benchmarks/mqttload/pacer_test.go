package mqttload

import (
	"math"
	"testing"
	"time"
)

// TestPacerSchedule drives pacers with a simulated clock: a connection that
// sends everything due at each wake-up never exceeds the schedule and,
// however irregular its wake-ups, has sent exactly the scheduled number at
// every wake-up.
func TestPacerSchedule(t *testing.T) {
	tests := []struct {
		name  string
		rate  float64
		conns int
		step  func(i int) time.Duration // time between wake-ups
	}{
		{"50k over 100 conns, 1ms ticks", 50000, 100, func(int) time.Duration { return time.Millisecond }},
		{"fast single conn, coarse ticks", 400000, 1, func(int) time.Duration { return 3 * time.Millisecond }},
		{"stalls then catches up", 2000, 5, func(i int) time.Duration {
			if i%50 == 0 {
				return 300 * time.Millisecond
			}
			return 100 * time.Microsecond
		}},
		{"slow rate", 10, 3, func(int) time.Duration { return 7 * time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var total uint64
			for idx := range tt.conns {
				p := newPacer(0, tt.rate, tt.conns, idx)
				var now int64
				var sent uint64
				for i := 0; now < int64(10*time.Second); i++ {
					now += int64(tt.step(i))
					sent += p.due(now, sent)
					if p.due(now, sent) != 0 {
						t.Fatal("due is not zero right after sending everything due")
					}
					want := uint64(0)
					if now >= p.start {
						want = uint64(math.Floor(float64(now-p.start)/p.interval)) + 1
					}
					if sent != want {
						t.Fatalf("conn %d at %s: sent %d, schedule says %d", idx, time.Duration(now), sent, want)
					}
					if next := p.at(sent); next <= now || p.due(next, sent) == 0 {
						t.Fatalf("at(%d) = %d is not the next release after %d", sent, next, now)
					}
				}
				total += sent
			}
			// Over 10s the connections together send rate*10s, give or
			// take one message per connection and the last step.
			want := tt.rate * 10
			if d := math.Abs(float64(total) - want); d > float64(tt.conns)+tt.rate*0.31 {
				t.Errorf("total %d over 10s, want about %.0f", total, want)
			}
		})
	}
}
