package window

import (
	"bytes"
	"math"
	"reflect"
	"testing"
)

// step is one call of a script: an event, or an Advance when adv is set.
type step struct {
	e   ev
	adv bool
}

// runScript runs script with a over st and returns every output.
func runScript(t *testing.T, st *memStore, a *Aggregator, script []step) []Outcome {
	t.Helper()
	var outs []Outcome
	for _, s := range script {
		if s.adv {
			res, err := a.Advance(st, s.e.at)
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, Outcome{Results: res})
			continue
		}
		outs = append(outs, mustAdd(t, a, st, s.e))
	}
	return outs
}

// TestRestartMidWindow: stopping after any step (the Aggregator and its
// memory are lost; only the store survives, as after kill -9 with the
// batch committed) and continuing with a new Aggregator gives exactly the
// outputs and the state of an uninterrupted run.
func TestRestartMidWindow(t *testing.T) {
	script := []step{
		{e: ev{"t1", 1000, 20.5}}, {e: ev{"t2", 1010, 3}}, {e: ev{"t1", 1400, 21}},
		{e: ev{"t1", 900, 19}}, {e: ev{"t1", 1999, 25}}, {e: ev{"t2", 2300, 4}},
		{e: ev{"t1", 2500, 22}}, {e: ev{"t1", 1700, 30}}, // late, after [1000,2000) closed at 2500
		{adv: true, e: ev{at: 3000}}, {e: ev{"t1", 3100, 1}}, {e: ev{"t1", 2950, 2}},
		{e: ev{"t2", 3600, 5}}, {adv: true, e: ev{at: 10000}},
	}
	configs := map[string]Config{
		"tumbling dlq":    {Size: 1000, AllowedLateness: 500, Aggregates: allAggs},
		"tumbling update": {Size: 1000, AllowedLateness: 500, Late: LateUpdate, LateRetention: 2000, Aggregates: allAggs},
		"hopping dlq":     {Size: 1000, Slide: 250, AllowedLateness: 100, Aggregates: allAggs},
		"hopping update":  {Size: 1000, Slide: 500, Late: LateUpdate, Aggregates: allAggs},
	}
	for name, cfg := range configs {
		t.Run(name, func(t *testing.T) {
			refStore := newMemStore()
			want := runScript(t, refStore, mustNew(t, cfg), script)
			var total int
			for _, o := range want {
				total += len(o.Results)
			}
			if total == 0 {
				t.Fatal("script produced no results")
			}
			for cut := 1; cut < len(script); cut++ {
				st := newMemStore()
				got := runScript(t, st, mustNew(t, cfg), script[:cut])
				// Crash: only the store survives.
				st = st.Clone()
				got = append(got, runScript(t, st, mustNew(t, cfg), script[cut:])...)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("restart after step %d:\n got %+v\nwant %+v", cut, got, want)
				}
				if !reflect.DeepEqual(st.M, refStore.M) {
					t.Fatalf("restart after step %d: store differs from an uninterrupted run", cut)
				}
			}
		})
	}
}

// TestStateKeysDeterministic: the same events give byte-identical state
// whatever the Aggregator's history (keys and values are a function of the
// input alone).
func TestStateKeysDeterministic(t *testing.T) {
	cfg := Config{Size: 100, Slide: 50, Aggregates: allAggs}
	a1, a2 := mustNew(t, cfg), mustNew(t, cfg)
	s1, s2 := newMemStore(), newMemStore()
	for i := int64(0); i < 40; i++ {
		e := ev{key: []string{"x", "y"}[i%2], at: i * 7 % 130, v: math.Sqrt(float64(i))}
		mustAdd(t, a1, s1, e)
		if i%5 == 0 {
			a2 = mustNew(t, cfg)
		}
		mustAdd(t, a2, s2, e)
	}
	if len(s1.M) == 0 || !reflect.DeepEqual(s1.M, s2.M) {
		t.Fatalf("stores differ (%d vs %d keys)", len(s1.M), len(s2.M))
	}
	for k := range s1.M {
		if k[0] != 'm' && k[0] != 'o' && k[0] != 'v' {
			t.Fatalf("unexpected key %q", k)
		}
	}
}

func FuzzSummaryDecode(f *testing.F) {
	var s summary
	s.add(5, 1.5)
	s.add(3, -2)
	f.Add(s.appendEncode(nil), false)
	s.tail = []float64{1.5, -2}
	f.Add(s.appendEncode(nil), true)
	f.Add([]byte{summaryVersion}, true)
	f.Fuzz(func(t *testing.T, b []byte, withValues bool) {
		var s summary
		if err := s.decode(b, withValues); err != nil {
			return
		}
		if int64(len(s.tail)) >= blockSize || (!withValues && len(s.tail) != 0) {
			t.Fatalf("tail of %d values (withValues %v)", len(s.tail), withValues)
		}
		if out := s.appendEncode(nil); !bytes.Equal(out, b) {
			t.Fatalf("round trip % x -> % x", b, out)
		}
	})
}

func FuzzParseWindowKey(f *testing.F) {
	f.Add(appendWindowKey(nil, prefixOpen, -5, "dev-1"))
	f.Add(appendWindowKey(nil, prefixClosed, 1<<40, ""))
	f.Add([]byte("o"))
	f.Fuzz(func(t *testing.T, b []byte) {
		start, key, ok := parseWindowKey(b)
		if !ok {
			return
		}
		if out := appendWindowKey(nil, b[0], start, key); !bytes.Equal(out, b) {
			// Non-minimal uvarint lengths parse but do not round trip;
			// they must at least name the same window.
			s2, k2, ok2 := parseWindowKey(out)
			if !ok2 || s2 != start || k2 != key {
				t.Fatalf("round trip %x -> %x", b, out)
			}
		}
	})
}
