package window

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// model is a brute-force reference of the documented semantics: it keeps
// every event of every window and recomputes aggregates from scratch.
type model struct {
	cfg    Config
	wm     int64
	open   map[winID][]ev
	closed map[winID]*closedWin
}

type closedWin struct {
	events []ev
	rev    int64
}

func newModel(cfg Config) *model {
	return &model{cfg: cfg, wm: math.MinInt64, open: map[winID][]ev{}, closed: map[winID]*closedWin{}}
}

func (m *model) closesAt(start int64) int64 { return start + m.cfg.Size + m.cfg.AllowedLateness }

func sortIDs(ids []winID) {
	sort.Slice(ids, func(i, j int) bool {
		a, b := ids[i], ids[j]
		if a.start != b.start {
			return a.start < b.start
		}
		if len(a.key) != len(b.key) {
			return len(a.key) < len(b.key)
		}
		return a.key < b.key
	})
}

func (m *model) advance(wm int64) []Result {
	if wm <= m.wm {
		return nil
	}
	m.wm = wm
	var ids []winID
	for id := range m.open {
		if m.closesAt(id.start) <= wm {
			ids = append(ids, id)
		}
	}
	sortIDs(ids)
	var out []Result
	for _, id := range ids {
		evs := m.open[id]
		delete(m.open, id)
		out = append(out, m.result(id, evs, 0))
		if m.cfg.Late == LateUpdate {
			m.closed[id] = &closedWin{events: evs}
		}
	}
	return out
}

func (m *model) add(e ev) Outcome {
	var o Outcome
	o.Results = m.advance(e.at)
	slide := m.cfg.slide()
	var starts []int64
	for s := floorDiv(e.at, slide) * slide; s > e.at-m.cfg.Size; s -= slide {
		starts = append([]int64{s}, starts...) // ascending
	}
	for _, s := range starts {
		id := winID{s, e.key}
		switch {
		case m.closesAt(s) > m.wm:
			m.open[id] = append(m.open[id], e)
		case m.cfg.Late == LateUpdate && m.closesAt(s)+m.cfg.retention() > m.wm:
			c := m.closed[id]
			if c == nil {
				c = &closedWin{rev: -1}
				m.closed[id] = c
			}
			c.rev++
			c.events = append(c.events, e)
			o.Results = append(o.Results, m.result(id, c.events, c.rev))
		default:
			o.Late = true
			o.Missed = append(o.Missed, s)
		}
	}
	return o
}

func (m *model) result(id winID, evs []ev, rev int64) Result {
	r := Result{Key: id.key, Start: id.start, End: id.start + m.cfg.Size, Count: int64(len(evs)), Revision: rev}
	var sum, mean float64
	mn, mx := math.Inf(1), math.Inf(-1)
	first, last := evs[0], evs[0]
	vals := make([]float64, len(evs))
	for i, e := range evs {
		sum += e.v
		mn, mx = math.Min(mn, e.v), math.Max(mx, e.v)
		if e.at < first.at {
			first = e
		}
		if e.at >= last.at {
			last = e
		}
		vals[i] = e.v
	}
	mean = sum / float64(len(evs))
	var ss float64
	for _, v := range vals {
		ss += (v - mean) * (v - mean)
	}
	sort.Float64s(vals)
	for _, a := range m.cfg.Aggregates {
		var x float64
		switch a.Func {
		case Count:
			x = float64(len(evs))
		case Sum:
			x = sum
		case Avg:
			x = mean
		case Min:
			x = mn
		case Max:
			x = mx
		case First:
			x = first.v
		case Last:
			x = last.v
		case StdDev:
			x = math.Sqrt(ss / float64(len(evs)))
		case Percentile:
			x = percentile(vals, a.P)
		}
		r.Values = append(r.Values, x)
	}
	return r
}

// approxResults compares with a tolerance for avg/stddev rounding.
func approxResults(got, want []Result) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d results, want %d:\n got %+v\nwant %+v", len(got), len(want), got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Key != w.Key || g.Start != w.Start || g.End != w.End || g.Count != w.Count || g.Revision != w.Revision || len(g.Values) != len(w.Values) {
			return fmt.Errorf("result %d = %+v, want %+v", i, g, w)
		}
		for j := range g.Values {
			if d := math.Abs(g.Values[j] - w.Values[j]); d > 1e-9*math.Max(1, math.Abs(w.Values[j])) {
				return fmt.Errorf("result %d value %d = %v, want %v (%+v)", i, j, g.Values[j], w.Values[j], w)
			}
		}
	}
	return nil
}

// runAgainstModel drives an Aggregator and the model with the same random
// script, restarting the Aggregator (a new one over the same store) or
// resetting it at random points, and compares every output.
func runAgainstModel(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	size := int64(1 + r.IntN(50))
	cfg := Config{
		Size:            size,
		AllowedLateness: int64(r.IntN(30)),
		Late:            LatePolicy(r.IntN(2)),
		LateRetention:   int64(r.IntN(40)),
		Aggregates:      allAggs,
	}
	if r.IntN(2) == 0 {
		cfg.Slide = int64(1 + r.IntN(int(size)))
	}
	m := newModel(cfg)
	st := newMemStore()
	a := mustNew(t, cfg)
	keys := []string{"", "a", "ab", "dev-1", "b"}
	keys = keys[:1+r.IntN(len(keys))]
	maxStep := 1 + r.IntN(8) // small steps: many values per window
	now := int64(r.IntN(200)) - 100
	steps := 50 + r.IntN(200)
	for i := 0; i < steps; i++ {
		switch x := r.IntN(100); {
		case x < 5:
			a = mustNew(t, cfg) // restart: a fresh Aggregator over the same state
		case x < 8:
			a.Reset()
		case x < 13:
			wm := now + int64(r.IntN(60))
			got, err := a.Advance(st, wm)
			if err != nil {
				t.Fatalf("seed %d step %d: Advance: %v", seed, i, err)
			}
			if err := approxResults(got, m.advance(wm)); err != nil {
				t.Fatalf("seed %d step %d cfg %+v: Advance(%d): %v", seed, i, cfg, wm, err)
			}
		default:
			now += int64(r.IntN(maxStep))
			e := ev{key: keys[r.IntN(len(keys))], at: now - int64(r.IntN(60)), v: math.Round(r.NormFloat64()*100) / 4}
			got, err := a.Add(st, e.key, e.at, e.v)
			if err != nil {
				t.Fatalf("seed %d step %d: Add: %v", seed, i, err)
			}
			want := m.add(e)
			if got.Late != want.Late || fmt.Sprint(got.Missed) != fmt.Sprint(want.Missed) {
				t.Fatalf("seed %d step %d cfg %+v: Add(%+v) late=%v missed=%v, want %v %v", seed, i, cfg, e, got.Late, got.Missed, want.Late, want.Missed)
			}
			if err := approxResults(got.Results, want.Results); err != nil {
				t.Fatalf("seed %d step %d cfg %+v: Add(%+v): %v", seed, i, cfg, e, err)
			}
		}
	}
	// Drain: everything still open closes.
	got, err := a.Advance(st, now+1000)
	if err != nil {
		t.Fatal(err)
	}
	if err := approxResults(got, m.advance(now+1000)); err != nil {
		t.Fatalf("seed %d drain: %v", seed, err)
	}
	if ks := st.KeysWithPrefix("o"); len(ks) != 0 {
		t.Fatalf("seed %d: open windows left after drain: %d", seed, len(ks))
	}
}

func TestAgainstModel(t *testing.T) {
	for seed := uint64(0); seed < 300; seed++ {
		runAgainstModel(t, seed)
	}
}

func FuzzAgainstModel(f *testing.F) {
	f.Add(uint64(1))
	f.Add(uint64(42))
	f.Fuzz(func(t *testing.T, seed uint64) { runAgainstModel(t, seed) })
}
