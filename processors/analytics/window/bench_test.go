package window

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/cockroachdb/pebble/vfs"
)

// pebbleStore is the runtime's store in miniature: an indexed Pebble batch
// over an in-memory DB, committed every batchSize events (one poll).
type pebbleStore struct {
	db *pebble.DB
	b  *pebble.Batch
}

func newPebbleStore(tb testing.TB) *pebbleStore {
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return &pebbleStore{db: db, b: db.NewIndexedBatch()}
}

func (s *pebbleStore) commit(tb testing.TB) {
	if err := s.b.Commit(pebble.NoSync); err != nil {
		tb.Fatal(err)
	}
	s.b.Close()
	s.b = s.db.NewIndexedBatch()
}

func (s *pebbleStore) Get(k []byte) ([]byte, bool, error) {
	v, c, err := s.b.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := append([]byte(nil), v...)
	c.Close()
	return out, true, nil
}

func (s *pebbleStore) Set(k, v []byte) error { return s.b.Set(k, v, nil) }
func (s *pebbleStore) Delete(k []byte) error { return s.b.Delete(k, nil) }
func (s *pebbleStore) Scan(lo, hi []byte, fn func(k, v []byte) bool) error {
	it, err := s.b.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if !fn(it.Key(), it.Value()) {
			break
		}
	}
	return it.Close()
}

// benchStore is a Store the benchmark commits every 1000 events.
type benchStore interface {
	Store
	commit(testing.TB)
}

// mapStore is the in-memory store as a benchStore: commit does nothing,
// a map has no batches.
type mapStore struct{ *memStore }

func (mapStore) commit(testing.TB) {}

// BenchmarkAdd measures events/s through Add: 1000 devices, one event per
// ms of event time (up to 300 ms out of order), 10 s windows that close
// as time moves. "pebble" is the runtime's setup (an indexed batch over
// an in-memory Pebble, committed every 1000 events); "map" is an
// in-memory map, to show the library's own cost. One "update" is one
// event added to one window; hopping windows do Size/Slide per event.
func BenchmarkAdd(b *testing.B) {
	basic := []Aggregate{{Func: Count}, {Func: Sum}, {Func: Avg}, {Func: Min}, {Func: Max}, {Func: Last}, {Func: StdDev}}
	cases := []struct {
		name string
		cfg  Config
	}{
		{"tumbling", Config{Size: 10_000, AllowedLateness: 1000, Aggregates: basic}},
		{"tumbling_percentile", Config{Size: 10_000, AllowedLateness: 1000, Aggregates: append(basic[:len(basic):len(basic)], Aggregate{Func: Percentile, P: 95})}},
		{"hopping_x4", Config{Size: 10_000, Slide: 2500, AllowedLateness: 1000, Aggregates: basic}},
		{"tumbling_late_update", Config{Size: 10_000, AllowedLateness: 1000, Late: LateUpdate, Aggregates: basic}},
	}
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = fmt.Sprintf("thing-%04d", i)
	}
	stores := []struct {
		name string
		open func(testing.TB) benchStore
	}{
		{"pebble", func(tb testing.TB) benchStore { return newPebbleStore(tb) }},
		{"map", func(testing.TB) benchStore { return mapStore{newMemStore()} }},
	}
	for _, sc := range stores {
		for _, c := range cases {
			benchAdd(b, sc.name+"/"+c.name, c.cfg, keys, sc.open)
		}
	}
}

// cpuTime is the CPU time (user + system) the process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchAdd runs one BenchmarkAdd case.
func benchAdd(b *testing.B, name string, cfg Config, keys []string, open func(testing.TB) benchStore) {
	b.Run(name, func(b *testing.B) {
		st := open(b)
		a := mustNew(b, cfg)
		perEvent := cfg.Size / cfg.slide()
		results := 0
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := cpuTime(b)
		for i := 0; i < b.N; i++ {
			at := int64(i) - int64(i%7)*50 // up to 300 ms out of order
			out, err := a.Add(st, keys[i%len(keys)], at, float64(i%100))
			if err != nil {
				b.Fatal(err)
			}
			results += len(out.Results)
			if i%1000 == 999 {
				st.commit(b)
			}
		}
		st.commit(b)
		if b.N > 100_000 && results == 0 {
			b.Fatal("no window closed")
		}
		sec := b.Elapsed().Seconds()
		b.ReportMetric(float64(b.N)/sec, "events/s")
		b.ReportMetric(float64(b.N*int(perEvent))/sec, "updates/s")
		// On a shared machine wall time depends on the neighbours; the
		// process's CPU time (Pebble's background work included) does not.
		b.ReportMetric(float64(b.N*int(perEvent))/(cpuTime(b)-cpu0).Seconds(), "updates/cpu-s")
	})
}
