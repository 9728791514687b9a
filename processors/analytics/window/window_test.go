package window

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"testing"
)

var allAggs = []Aggregate{
	{Func: Count}, {Func: Sum}, {Func: Avg}, {Func: Min}, {Func: Max},
	{Func: First}, {Func: Last}, {Func: StdDev}, {Func: Percentile, P: 50}, {Func: Percentile, P: 90},
}

// ev is one input event.
type ev struct {
	key string
	at  int64
	v   float64
}

func mustNew(t testing.TB, c Config) *Aggregator {
	t.Helper()
	a, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

func mustAdd(t testing.TB, a *Aggregator, st Store, e ev) Outcome {
	t.Helper()
	out, err := a.Add(st, e.key, e.at, e.v)
	if err != nil {
		t.Fatalf("Add(%+v): %v", e, err)
	}
	return out
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Size: 1000, Aggregates: []Aggregate{{Func: Count}}}
	tests := []struct {
		name   string
		mutate func(*Config)
		valid  bool
	}{
		{"tumbling", func(*Config) {}, true},
		{"tumbling with slide = size", func(c *Config) { c.Slide = 1000 }, true},
		{"hopping", func(c *Config) { c.Slide = 250 }, true},
		{"hopping, slide not dividing size", func(c *Config) { c.Slide = 300 }, true},
		{"late update with retention", func(c *Config) { c.Late = LateUpdate; c.LateRetention = 5000 }, true},
		{"percentile 0 and 100", func(c *Config) { c.Aggregates = []Aggregate{{Func: Percentile}, {Func: Percentile, P: 100}} }, true},
		{"zero size", func(c *Config) { c.Size = 0 }, false},
		{"huge size", func(c *Config) { c.Size = maxSpan + 1 }, false},
		{"slide above size", func(c *Config) { c.Slide = 1001 }, false},
		{"negative slide", func(c *Config) { c.Slide = -1 }, false},
		{"negative lateness", func(c *Config) { c.AllowedLateness = -1 }, false},
		{"negative retention", func(c *Config) { c.LateRetention = -1 }, false},
		{"unknown policy", func(c *Config) { c.Late = 7 }, false},
		{"no aggregates", func(c *Config) { c.Aggregates = nil }, false},
		{"unknown func", func(c *Config) { c.Aggregates = []Aggregate{{Func: 0}} }, false},
		{"percentile above 100", func(c *Config) { c.Aggregates = []Aggregate{{Func: Percentile, P: 101}} }, false},
		{"percentile NaN", func(c *Config) { c.Aggregates = []Aggregate{{Func: Percentile, P: math.NaN()}} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			c.Aggregates = append([]Aggregate(nil), ok.Aggregates...)
			tt.mutate(&c)
			err := c.Validate()
			if tt.valid != (err == nil) {
				t.Fatalf("Validate(%+v) = %v, want valid=%v", c, err, tt.valid)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
			if _, nerr := New(c); (nerr == nil) != tt.valid {
				t.Fatalf("New = %v, want valid=%v", nerr, tt.valid)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	tests := []struct {
		vals []float64
		p    float64
		want float64
	}{
		{[]float64{7}, 50, 7},
		{[]float64{1, 2, 3, 4}, 0, 1},
		{[]float64{1, 2, 3, 4}, 100, 4},
		{[]float64{1, 2, 3, 4}, 50, 2.5},
		{[]float64{1, 2, 3, 4, 5}, 50, 3},
		{[]float64{10, 20, 30, 40, 50}, 90, 46},
		{[]float64{15, 20, 35, 40, 50}, 40, 29},
	}
	for _, tt := range tests {
		if got := percentile(tt.vals, tt.p); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("percentile(%v, %v) = %v, want %v", tt.vals, tt.p, got, tt.want)
		}
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Errorf("percentile of nothing is not NaN")
	}
}

// TestTumbling checks every aggregate on one window, closing on the
// watermark exactly at End + AllowedLateness, with out-of-order events
// inside the lateness.
func TestTumbling(t *testing.T) {
	a := mustNew(t, Config{Size: 1000, AllowedLateness: 200, Aggregates: allAggs})
	st := newMemStore()
	events := []ev{
		{"d1", 1100, 4},
		{"d1", 1050, 2}, // out of order: becomes First
		{"d1", 1900, 8},
		{"d2", 1500, 1},
		{"d1", 1300, 6},
		{"d1", 2100, 100}, // next window; watermark 2100 < 2000+200
		{"d1", 1999, 5},   // 101 ms behind, inside the lateness; becomes Last
	}
	for _, e := range events {
		if out := mustAdd(t, a, st, e); len(out.Results) != 0 || out.Late {
			t.Fatalf("Add(%+v) = %+v, want nothing yet", e, out)
		}
	}
	if res, err := a.Advance(st, 2199); err != nil || len(res) != 0 {
		t.Fatalf("Advance(2199) = %v, %v: want nothing (closes at 2200)", res, err)
	}
	res, err := a.Advance(st, 2200)
	if err != nil {
		t.Fatal(err)
	}
	// d1: 4 2 8 6 5 -> sum 25, mean 5, population variance (1+9+9+1+0)/5 = 4.
	want := []Result{
		{Key: "d1", Start: 1000, End: 2000, Count: 5, Values: []float64{5, 25, 5, 2, 8, 2, 5, 2, 5, 7.2}},
		{Key: "d2", Start: 1000, End: 2000, Count: 1, Values: []float64{1, 1, 1, 1, 1, 1, 1, 0, 1, 1}},
	}
	if !sameResults(res, want) {
		t.Fatalf("results\n got %+v\nwant %+v", res, want)
	}
	if wm, ok, _ := a.Watermark(st); !ok || wm != 2200 {
		t.Fatalf("watermark %d %v", wm, ok)
	}
	// The watermark never moves back.
	if res, _ := a.Advance(st, 100); len(res) != 0 {
		t.Fatalf("Advance back: %v", res)
	}
	if wm, _, _ := a.Watermark(st); wm != 2200 {
		t.Fatalf("watermark moved back to %d", wm)
	}
	// Closed windows leave no state behind (LateDLQ), the open one does.
	if ks := st.KeysWithPrefix("o"); len(ks) != 1 {
		t.Fatalf("open windows in store: %q", ks)
	}
	// Its one value is in the summary's tail: no value block yet.
	if ks := st.KeysWithPrefix("v"); len(ks) != 0 {
		t.Fatalf("value blocks in store: %q", ks)
	}
}

// TestWatermarkFromEvents: an event far ahead closes earlier windows in
// order of start, then key.
func TestWatermarkFromEvents(t *testing.T) {
	a := mustNew(t, Config{Size: 10, AllowedLateness: 10, Aggregates: []Aggregate{{Func: Sum}}})
	st := newMemStore()
	for _, e := range []ev{{"b", 0, 1}, {"a", 5, 2}, {"a", 9, 3}, {"c", 15, 4}, {"a", 12, 0}} {
		if out := mustAdd(t, a, st, e); len(out.Results) != 0 || out.Late {
			t.Fatalf("Add(%+v) = %+v, want nothing yet", e, out)
		}
	}
	// 30 passes End+lateness of [0,10) (20) and reaches [10,20)'s (30).
	out := mustAdd(t, a, st, ev{"a", 30, 5})
	var got []string
	for _, r := range out.Results {
		got = append(got, fmt.Sprintf("%s[%d,%d)=%v", r.Key, r.Start, r.End, r.Values[0]))
	}
	want := []string{"a[0,10)=5", "b[0,10)=1", "a[10,20)=0", "c[10,20)=4"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("closed %v, want %v", got, want)
	}
}

func TestLatePolicies(t *testing.T) {
	cfg := Config{Size: 100, AllowedLateness: 10, Aggregates: []Aggregate{{Func: Count}, {Func: Max}, {Func: Percentile, P: 50}}}
	t.Run("dlq", func(t *testing.T) {
		a := mustNew(t, cfg)
		st := newMemStore()
		mustAdd(t, a, st, ev{"k", 50, 1})
		out := mustAdd(t, a, st, ev{"k", 110, 2}) // wm 110 = 100+10: [0,100) closes
		if len(out.Results) != 1 || out.Results[0].Count != 1 {
			t.Fatalf("close: %+v", out)
		}
		late := mustAdd(t, a, st, ev{"k", 99, 50})
		if !late.Late || !reflect.DeepEqual(late.Missed, []int64{0}) || len(late.Results) != 0 {
			t.Fatalf("late event: %+v", late)
		}
		// The late event changed nothing: the open window still counts 1.
		res, _ := a.Advance(st, 1000)
		if len(res) != 1 || res[0].Start != 100 || res[0].Count != 1 || res[0].Values[1] != 2 {
			t.Fatalf("after late event: %+v", res)
		}
		if ks := st.KeysWithPrefix("o"); len(ks) != 0 {
			t.Fatalf("state left: %q", ks)
		}
		if ks := st.KeysWithPrefix("v"); len(ks) != 0 {
			t.Fatalf("values left: %q", ks)
		}
	})
	t.Run("update", func(t *testing.T) {
		c := cfg
		c.Late = LateUpdate
		c.LateRetention = 200
		a := mustNew(t, c)
		st := newMemStore()
		mustAdd(t, a, st, ev{"k", 50, 1})
		mustAdd(t, a, st, ev{"k", 60, 3})
		out := mustAdd(t, a, st, ev{"k", 110, 2})
		if len(out.Results) != 1 || out.Results[0].Revision != 0 || out.Results[0].Values[0] != 2 {
			t.Fatalf("close: %+v", out)
		}
		late := mustAdd(t, a, st, ev{"k", 99, 50})
		want := []Result{{Key: "k", Start: 0, End: 100, Count: 3, Revision: 1, Values: []float64{3, 50, 3}}}
		if late.Late || !reflect.DeepEqual(late.Results, want) {
			t.Fatalf("late update: %+v, want %+v", late, want)
		}
		late = mustAdd(t, a, st, ev{"k", 0, 0})
		if late.Results[0].Revision != 2 || late.Results[0].Count != 4 || late.Results[0].Values[2] != 2 {
			t.Fatalf("second late update: %+v", late)
		}
		// A late event for a key that had no event in the closed window
		// starts it at revision 0.
		late = mustAdd(t, a, st, ev{"other", 5, 9})
		if len(late.Results) != 1 || late.Results[0].Revision != 0 || late.Results[0].Key != "other" || late.Results[0].Count != 1 {
			t.Fatalf("late event for a new key: %+v", late)
		}
		// Past End + lateness + retention (100+10+200 = 310) the window is gone.
		mustAdd(t, a, st, ev{"k", 310, 1})
		gone := mustAdd(t, a, st, ev{"k", 20, 1})
		if !gone.Late || len(gone.Results) != 0 || !reflect.DeepEqual(gone.Missed, []int64{0}) {
			t.Fatalf("event past retention: %+v", gone)
		}
		if ks := st.KeysWithPrefix("c\x80\x00\x00\x00\x00\x00\x00\x00"); len(ks) != 0 {
			t.Fatalf("window [0,100) not purged: %q", ks)
		}
	})
}

// TestHopping: with Size 60 and Slide 20 an event lands in 3 windows.
func TestHopping(t *testing.T) {
	a := mustNew(t, Config{Size: 60, Slide: 20, Aggregates: []Aggregate{{Func: Count}, {Func: Sum}}})
	st := newMemStore()
	mustAdd(t, a, st, ev{"k", 45, 1})
	mustAdd(t, a, st, ev{"k", 55, 10})
	if ks := st.KeysWithPrefix("o"); len(ks) != 3 { // starts 0, 20, 40
		t.Fatalf("open windows: %d, want 3", len(ks))
	}
	// 65 moves the watermark past [0,60)'s end: it closes; 65 opens [60,120).
	out := mustAdd(t, a, st, ev{"k", 65, 100})
	if len(out.Results) != 1 || out.Results[0].Start != 0 {
		t.Fatalf("Add(65) = %+v, want [0,60) closed", out)
	}
	res, err := a.Advance(st, 1000)
	if err != nil {
		t.Fatal(err)
	}
	res = append(out.Results, res...)
	var got []string
	for _, r := range res {
		got = append(got, fmt.Sprintf("[%d,%d) n=%d sum=%v", r.Start, r.End, r.Count, r.Values[1]))
	}
	want := []string{"[0,60) n=2 sum=11", "[20,80) n=3 sum=111", "[40,100) n=3 sum=111", "[60,120) n=1 sum=100"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("windows\n got %v\nwant %v", got, want)
	}
}

// TestHoppingPartlyLate: an event late for some of its windows is added to
// the open ones and reports the rest.
func TestHoppingPartlyLate(t *testing.T) {
	a := mustNew(t, Config{Size: 30, Slide: 10, Aggregates: []Aggregate{{Func: Count}}})
	st := newMemStore()
	mustAdd(t, a, st, ev{"k", 45, 1}) // wm 45: windows with start+30 <= 45 closed: start <= 15
	out := mustAdd(t, a, st, ev{"k", 25, 1})
	if !out.Late || !reflect.DeepEqual(out.Missed, []int64{0, 10}) {
		t.Fatalf("outcome %+v, want late for windows 0 and 10", out)
	}
	res, _ := a.Advance(st, 100)
	counts := map[int64]int64{}
	for _, r := range res {
		counts[r.Start] = r.Count
	}
	if want := map[int64]int64{20: 2, 30: 1, 40: 1}; !reflect.DeepEqual(counts, want) {
		t.Fatalf("counts %v, want %v", counts, want)
	}
}

func TestNegativeTimes(t *testing.T) {
	a := mustNew(t, Config{Size: 100, Aggregates: []Aggregate{{Func: Count}}})
	st := newMemStore()
	mustAdd(t, a, st, ev{"k", -1, 1})
	mustAdd(t, a, st, ev{"k", -100, 1})
	out := mustAdd(t, a, st, ev{"k", 0, 1})
	res, _ := a.Advance(st, 500)
	res = append(out.Results, res...)
	if len(res) != 2 || res[0].Start != -100 || res[0].Count != 2 || res[1].Start != 0 || res[1].Count != 1 {
		t.Fatalf("results %+v", res)
	}
}

func TestAddRejects(t *testing.T) {
	a := mustNew(t, Config{Size: 100, Aggregates: []Aggregate{{Func: Count}}})
	st := newMemStore()
	for _, e := range []ev{{"k", 0, math.NaN()}, {"k", 0, math.Inf(-1)}, {"k", maxTime + 1, 1}, {"k", -maxTime - 1, 1}} {
		if _, err := a.Add(st, e.key, e.at, e.v); !errors.Is(err, ErrInput) {
			t.Errorf("Add(%+v) = %v, want ErrInput", e, err)
		}
	}
	if len(st.M) != 0 {
		t.Errorf("rejected events wrote state: %d keys", len(st.M))
	}
}

// TestKeysDoNotCollide: group keys that are prefixes of each other keep
// their own values.
func TestKeysDoNotCollide(t *testing.T) {
	a := mustNew(t, Config{Size: 100, Aggregates: []Aggregate{{Func: Percentile, P: 100}, {Func: Count}}})
	st := newMemStore()
	for _, e := range []ev{{"", 1, 1}, {"a", 1, 2}, {"ab", 1, 3}, {"a\x00", 1, 4}, {"a", 2, 5}} {
		mustAdd(t, a, st, e)
	}
	res, _ := a.Advance(st, 1000)
	got := map[string][2]float64{}
	for _, r := range res {
		got[r.Key] = [2]float64{r.Values[0], r.Values[1]}
	}
	want := map[string][2]float64{"": {1, 1}, "a": {5, 2}, "ab": {3, 1}, "a\x00": {4, 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestStoreErrors: a failing store surfaces wrapped errors, and the
// Aggregator resets so a retry over the store's real state is correct.
func TestStoreErrors(t *testing.T) {
	cfg := Config{Size: 100, Aggregates: []Aggregate{{Func: Count}, {Func: Percentile, P: 50}}}
	for fail := 1; fail <= 6; fail++ {
		a := mustNew(t, cfg)
		st := newMemStore()
		mustAdd(t, a, st, ev{"k", 10, 1})
		snapshot := st.Clone()
		st.FailAfter, st.Writes = fail, 0
		_, err := a.Add(st, "k", 20, 2)
		if err == nil {
			// Fewer writes than fail: the batch succeeded.
			continue
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("fail at write %d: %v does not wrap the store error", fail, err)
		}
		// Roll back (the runtime discards the batch) and retry.
		*st = *snapshot
		mustAdd(t, a, st, ev{"k", 20, 2})
		res, _ := a.Advance(st, 1000)
		if len(res) != 1 || res[0].Count != 2 || res[0].Values[1] != 1.5 {
			t.Fatalf("fail at write %d: after retry %+v", fail, res)
		}
	}
}

// sameResults compares results, values within a relative 1e-12.
func sameResults(got, want []Result) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Key != w.Key || g.Start != w.Start || g.End != w.End || g.Count != w.Count || g.Revision != w.Revision || len(g.Values) != len(w.Values) {
			return false
		}
		for j := range g.Values {
			if math.Abs(g.Values[j]-w.Values[j]) > 1e-12*math.Max(1, math.Abs(w.Values[j])) {
				return false
			}
		}
	}
	return true
}

// TestPercentileBlocks: windows with many values (several full value
// blocks plus a tail), across restarts and late updates, give the exact
// percentiles of a sorted copy.
func TestPercentileBlocks(t *testing.T) {
	for _, late := range []LatePolicy{LateDLQ, LateUpdate} {
		cfg := Config{Size: 1000, Late: late, AllowedLateness: 100, Aggregates: []Aggregate{{Func: Percentile, P: 0}, {Func: Percentile, P: 37}, {Func: Percentile, P: 100}, {Func: Count}}}
		st := newMemStore()
		a := mustNew(t, cfg)
		var vals []float64
		for i := 0; i < 3*blockSize+5; i++ {
			if i%7 == 3 {
				a = mustNew(t, cfg) // restart
			}
			v := float64((i * 7919) % 101)
			vals = append(vals, v)
			mustAdd(t, a, st, ev{"k", int64(i * 10), v})
		}
		if n, want := len(st.KeysWithPrefix("v")), len(vals)/blockSize; n != want {
			t.Fatalf("%v: %d value blocks, want %d", late, n, want)
		}
		res, err := a.Advance(st, 1100)
		if err != nil || len(res) != 1 {
			t.Fatalf("%v: %v %v", late, res, err)
		}
		check := func(r Result, vals []float64) {
			t.Helper()
			sorted := append([]float64(nil), vals...)
			sort.Float64s(sorted)
			want := []float64{sorted[0], percentile(sorted, 37), sorted[len(sorted)-1], float64(len(sorted))}
			if !reflect.DeepEqual(r.Values, want) {
				t.Fatalf("%v: values %v, want %v", late, r.Values, want)
			}
		}
		check(res[0], vals)
		if late == LateDLQ {
			if ks := st.KeysWithPrefix("v"); len(ks) != 0 {
				t.Fatalf("value blocks left after close: %d", len(ks))
			}
			continue
		}
		// Late updates keep adding to the closed window's blocks.
		for i := 0; i < blockSize; i++ {
			a = mustNew(t, cfg)
			out := mustAdd(t, a, st, ev{"k", 999, float64(-i)})
			vals = append(vals, float64(-i))
			if len(out.Results) != 1 || out.Results[0].Revision != int64(i+1) {
				t.Fatalf("late update %d: %+v", i, out)
			}
			check(out.Results[0], vals)
		}
	}
}
