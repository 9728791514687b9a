package mqttload

import (
	"math/bits"
	"time"
)

// Histogram buckets latencies in microseconds, log-linearly: exact below
// 128µs, then 64 sub-buckets per power of two (at most 1.6% relative
// error), up to about 19 hours. It is not safe for concurrent use; each
// connection's reader owns one and Merge combines them.
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    uint64 // µs
	min    uint64 // µs
	max    uint64 // µs
}

const (
	histSubBits = 6
	histMaxExp  = 36 // values below 2^36 µs
	histBuckets = (histMaxExp - histSubBits + 1) << histSubBits
)

// bucketOf returns the bucket index of v µs.
func bucketOf(v uint64) int {
	if v < 1<<(histSubBits+1) {
		return int(v)
	}
	k := bits.Len64(v) - 1 // 2^k <= v < 2^(k+1)
	if k >= histMaxExp {
		return histBuckets - 1
	}
	shift := k - histSubBits
	return (shift+1)<<histSubBits + int(v>>shift) - 1<<histSubBits
}

// bucketLow returns the smallest value (µs) that falls into bucket i.
func bucketLow(i int) uint64 {
	if i < 1<<(histSubBits+1) {
		return uint64(i)
	}
	shift := i>>histSubBits - 1
	m := uint64(i&(1<<histSubBits-1)) + 1<<histSubBits
	return m << shift
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d / time.Microsecond)
	}
	h.counts[bucketOf(v)]++
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n++
	h.sum += v
}

// Merge adds o's observations to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of recorded latencies.
func (h *Histogram) Count() uint64 { return h.n }

// Quantile returns the latency at quantile q in [0, 1]: the lower bound of
// the bucket holding the ceil(q*n)-th smallest value, clamped to the exact
// minimum and maximum. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999999)
	if rank < 1 {
		rank = 1
	}
	if rank >= h.n {
		return time.Duration(h.max) * time.Microsecond
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := bucketLow(i)
			v = max(v, h.min)
			v = min(v, h.max)
			return time.Duration(v) * time.Microsecond
		}
	}
	return time.Duration(h.max) * time.Microsecond
}

// Summary returns the usual percentiles of h.
func (h *Histogram) Summary() LatencySummary {
	s := LatencySummary{Count: h.n}
	if h.n == 0 {
		return s
	}
	s.Min = time.Duration(h.min) * time.Microsecond
	s.Mean = time.Duration(h.sum/h.n) * time.Microsecond
	s.P50 = h.Quantile(0.50)
	s.P90 = h.Quantile(0.90)
	s.P99 = h.Quantile(0.99)
	s.P999 = h.Quantile(0.999)
	s.Max = time.Duration(h.max) * time.Microsecond
	return s
}

// LatencySummary is the publish→PUBACK latency distribution of a run,
// at microsecond resolution. Durations encode in JSON as nanoseconds.
type LatencySummary struct {
	Count uint64        `json:"count"`
	Min   time.Duration `json:"min_ns"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	P999  time.Duration `json:"p999_ns"`
	Max   time.Duration `json:"max_ns"`
}
