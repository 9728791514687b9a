package timer_test

import (
	"fmt"
	"sort"
	"time"

	"github.com/iotpipe/iotpipe/processors/analytics/timer"
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
	// WHERE state.reported.DoorOpened = true FOR 10 MINUTES, with resolve.
	tm, err := timer.New(timer.Config{For: 10 * time.Minute, Resolve: true})
	if err != nil {
		panic(err)
	}
	st := mapStore{}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	show := func(evs []timer.Event, err error) {
		if err != nil {
			panic(err)
		}
		for _, e := range evs {
			fmt.Printf("%s %s at %s\n", e.Key, e.Kind, e.At.Format("15:04"))
		}
	}
	show(tm.Observe(st, "fridge-1", true, t0))                      // door opened
	show(tm.Observe(st, "fridge-2", true, t0))                      // door opened
	show(tm.Observe(st, "fridge-2", false, t0.Add(3*time.Minute)))  // closed early: no alarm
	show(tm.Fire(st, t0.Add(10*time.Minute)))                       // the runtime's tick
	show(tm.Fire(st, t0.Add(11*time.Minute)))                       // fires once
	show(tm.Observe(st, "fridge-1", false, t0.Add(12*time.Minute))) // door closed
	// Output:
	// fridge-1 fired at 12:10
	// fridge-1 resolved at 12:12
}
