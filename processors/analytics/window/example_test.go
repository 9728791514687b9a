package window_test

import (
	"fmt"
	"sort"

	"github.com/iotpipe/iotpipe/processors/analytics/window"
)

// mapStore is a minimal Store; the rules processor passes its *processors.Tx.
type mapStore map[string][]byte

func (m mapStore) Get(k []byte) ([]byte, bool, error) { v, ok := m[string(k)]; return v, ok, nil }
func (m mapStore) Set(k, v []byte) error              { m[string(k)] = append([]byte(nil), v...); return nil }
func (m mapStore) Delete(k []byte) error              { delete(m, string(k)); return nil }
func (m mapStore) Scan(lo, hi []byte, fn func(k, v []byte) bool) error {
	var keys []string
	for k := range m {
		if k >= string(lo) && k < string(hi) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !fn([]byte(k), m[k]) {
			break
		}
	}
	return nil
}

func Example() {
	// GROUP BY tumbling 1-minute windows, 10 s allowed lateness.
	agg, err := window.New(window.Config{
		Size:            60_000,
		AllowedLateness: 10_000,
		Late:            window.LateDLQ,
		Aggregates: []window.Aggregate{
			{Func: window.Count}, {Func: window.Avg}, {Func: window.Max}, {Func: window.Percentile, P: 50},
		},
	})
	if err != nil {
		panic(err)
	}
	st := mapStore{}
	events := []struct {
		thing string
		at    int64 // event time, ms
		temp  float64
	}{
		{"fridge-1", 1_000, 4.0}, {"fridge-1", 30_000, 5.0}, {"fridge-1", 59_000, 9.0},
		{"fridge-1", 65_000, 4.5}, // next window; [0, 60s) still open until 70 s
		{"fridge-1", 55_000, 3.0}, // out of order, within the lateness: counted
		{"fridge-1", 71_000, 4.0}, // watermark 71 s: [0, 60s) closes
		{"fridge-1", 58_000, 8.0}, // too late: to the DLQ
	}
	for _, e := range events {
		out, err := agg.Add(st, e.thing, e.at, e.temp)
		if err != nil {
			panic(err)
		}
		for _, r := range out.Results {
			fmt.Printf("%s [%d, %d) count=%v avg=%v max=%v median=%v\n", r.Key, r.Start, r.End, r.Values[0], r.Values[1], r.Values[2], r.Values[3])
		}
		if out.Late {
			fmt.Printf("late event at %d: send to the DLQ\n", e.at)
		}
	}
	// Output:
	// fridge-1 [0, 60000) count=4 avg=5.25 max=9 median=4.5
	// late event at 58000: send to the DLQ
}
