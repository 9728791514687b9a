package window

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
)

// blockSize is how many values (Percentile) a full value block holds. A
// window's values are its full blocks, each under its own key, and the
// tail (count % blockSize values) stored with the summary, so adding a
// value rewrites one key and closing deletes one key per blockSize values.
const blockSize = 16

// summary is a window's running aggregates and, for Percentile, the tail
// of its values.
type summary struct {
	count         int64
	sum, min, max float64
	firstT, lastT int64
	firstV, lastV float64
	mean, m2      float64   // Welford's running mean and sum of squared deviations
	revision      int64     // results emitted so far for this window, minus one
	emitted       bool      // a result has been emitted (the window closed)
	tail          []float64 // Percentile: the values after the last full block
}

// summaryVersion is the first byte of an encoded summary.
const summaryVersion = 1

// summarySize is the length of an encoded summary without its tail.
const summarySize = 1 + 8*11 + 1

// add absorbs the value v at event time t.
func (s *summary) add(t int64, v float64) {
	s.count++
	if s.count == 1 {
		s.sum, s.min, s.max = v, v, v
		s.firstT, s.firstV, s.lastT, s.lastV = t, v, t, v
		s.mean, s.m2 = v, 0
		return
	}
	s.sum += v
	s.min = math.Min(s.min, v)
	s.max = math.Max(s.max, v)
	if t < s.firstT {
		s.firstT, s.firstV = t, v
	}
	if t >= s.lastT {
		s.lastT, s.lastV = t, v
	}
	d := v - s.mean
	s.mean += d / float64(s.count)
	s.m2 += d * (v - s.mean)
}

// appendEncode appends the summary's encoding: a fixed part, then the
// tail's values.
func (s *summary) appendEncode(b []byte) []byte {
	b = append(b, summaryVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(s.count))
	for _, f := range [...]float64{s.sum, s.min, s.max, s.firstV, s.lastV, s.mean, s.m2} {
		b = encodeFloat(b, f)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(s.firstT))
	b = binary.BigEndian.AppendUint64(b, uint64(s.lastT))
	b = binary.BigEndian.AppendUint64(b, uint64(s.revision))
	var e byte
	if s.emitted {
		e = 1
	}
	b = append(b, e)
	for _, v := range s.tail {
		b = encodeFloat(b, v)
	}
	return b
}

// decode reads what appendEncode wrote; withValues says whether the
// window keeps its values (then the tail must hold count % blockSize of
// them, else none).
func (s *summary) decode(b []byte, withValues bool) error {
	if len(b) < summarySize || (len(b)-summarySize)%8 != 0 || b[0] != summaryVersion {
		return fmt.Errorf("window: corrupt window state (%d bytes)", len(b))
	}
	p := b[1:]
	u := func() uint64 { v := binary.BigEndian.Uint64(p); p = p[8:]; return v }
	s.count = int64(u())
	fs := [...]*float64{&s.sum, &s.min, &s.max, &s.firstV, &s.lastV, &s.mean, &s.m2}
	for _, f := range fs {
		*f = math.Float64frombits(u())
	}
	s.firstT = int64(u())
	s.lastT = int64(u())
	s.revision = int64(u())
	if p[0] > 1 || s.count < 1 {
		return fmt.Errorf("window: corrupt window state")
	}
	s.emitted = p[0] == 1
	p = p[1:]
	n := int64(len(p) / 8)
	if (withValues && n != s.count%blockSize) || (!withValues && n != 0) {
		return fmt.Errorf("window: corrupt window state: %d values in the tail of %d", n, s.count)
	}
	s.tail = s.tail[:0]
	for ; len(p) > 0; p = p[8:] {
		s.tail = append(s.tail, decodeFloat(p))
	}
	return nil
}

// values computes the configured aggregates. sorted holds the window's
// values in ascending order when a Percentile is configured.
func (s *summary) values(aggs []Aggregate, sorted []float64) []float64 {
	out := make([]float64, len(aggs))
	for i, a := range aggs {
		switch a.Func {
		case Count:
			out[i] = float64(s.count)
		case Sum:
			out[i] = s.sum
		case Avg:
			out[i] = s.sum / float64(s.count)
		case Min:
			out[i] = s.min
		case Max:
			out[i] = s.max
		case First:
			out[i] = s.firstV
		case Last:
			out[i] = s.lastV
		case StdDev:
			out[i] = math.Sqrt(math.Max(s.m2, 0) / float64(s.count))
		case Percentile:
			out[i] = percentile(sorted, a.P)
		}
	}
	return out
}

// percentile is the linearly interpolated p-th percentile (0..100) of
// ascending values; NaN when there are none.
func percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	h := float64(n-1) * p / 100
	lo := int(math.Floor(h))
	if lo >= n-1 {
		return sorted[n-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// sortFloats sorts in place, ascending.
func sortFloats(v []float64) { sort.Float64s(v) }
