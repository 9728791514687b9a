package mqttload

import "math"

// pacer releases one connection's messages on a fixed schedule: message k
// may be sent at start + k*interval (nanoseconds on the run's monotonic
// clock). A connection that falls behind catches up rather than skipping
// slots, so the number released by time t never exceeds the schedule:
// released(t) <= floor((t-start)/interval) + 1.
type pacer struct {
	start    int64
	interval float64 // ns per message
}

// newPacer paces one of conns connections sharing a total rate (msg/s),
// staggering connection idx's first slot so the connections do not send in
// lockstep.
func newPacer(base int64, rate float64, conns, idx int) *pacer {
	interval := float64(conns) * 1e9 / rate
	return &pacer{
		start:    base + int64(interval*float64(idx)/float64(conns)),
		interval: interval,
	}
}

// due returns how many messages may be sent at time now when sent have
// already been sent.
func (p *pacer) due(now int64, sent uint64) uint64 {
	if now < p.start {
		return 0
	}
	allowed := uint64(math.Floor(float64(now-p.start)/p.interval)) + 1
	if allowed <= sent {
		return 0
	}
	return allowed - sent
}

// at returns the time at which message k may be sent.
func (p *pacer) at(k uint64) int64 {
	return p.start + int64(math.Ceil(float64(k)*p.interval))
}
