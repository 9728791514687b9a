package mqttload

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestBucketBounds(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 1<<36 - 1} {
		i := bucketOf(v)
		if i < prev {
			t.Errorf("bucketOf(%d) = %d, below the previous %d", v, i, prev)
		}
		prev = i
		low := bucketLow(i)
		if low > v {
			t.Errorf("bucketLow(bucketOf(%d)) = %d, above the value", v, low)
		}
		if v >= 128 && float64(v-low)/float64(v) > 1.0/64 {
			t.Errorf("bucket of %d starts at %d: more than 1/64 relative error", v, low)
		}
		if v < 128 && low != v {
			t.Errorf("bucket of %d starts at %d, want exact below 128", v, low)
		}
	}
	if i := bucketOf(1 << 50); i != histBuckets-1 {
		t.Errorf("huge value in bucket %d, want the last (%d)", i, histBuckets-1)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var a, b Histogram
	var all []time.Duration
	for i := range 100000 {
		d := time.Duration(rng.ExpFloat64()*2000) * time.Microsecond
		all = append(all, d)
		if i%2 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
	}
	a.Merge(&b)
	slices.Sort(all)
	if a.Count() != uint64(len(all)) {
		t.Fatalf("count %d, want %d", a.Count(), len(all))
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := all[int(q*float64(len(all)))-1]
		got := a.Quantile(q)
		if diff := float64(exact-got) / float64(exact); diff < 0 || diff > 0.02 {
			t.Errorf("q%v = %s, exact %s (relative error %.4f)", q, got, exact, diff)
		}
	}
	s := a.Summary()
	if s.Min != all[0].Truncate(time.Microsecond) || s.Max != all[len(all)-1].Truncate(time.Microsecond) {
		t.Errorf("min %s max %s, want %s %s", s.Min, s.Max, all[0], all[len(all)-1])
	}
	var empty Histogram
	if empty.Quantile(0.99) != 0 || empty.Summary().Count != 0 {
		t.Error("empty histogram reports values")
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(1000, func() { h.Record(1234 * time.Microsecond) }); n != 0 {
		t.Errorf("Record allocates %v times", n)
	}
}
