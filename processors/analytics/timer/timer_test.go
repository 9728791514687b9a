package timer

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeClock is the injectable clock of these tests.
type fakeClock struct{ now time.Time }

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) Advance(d time.Duration) { c.now = c.now.Add(d) }

// op is one step of a scenario: after moving the clock by wait, either
// fire at the clock's time, or observe (key, holds) at it.
type op struct {
	wait  time.Duration
	key   string
	holds bool
	fire  bool
	// restart replaces the Timers by a new one over the same store (only
	// the store survives, as after kill -9).
	restart bool
	want    []string // events as "kind key since+Xm at+Ym" relative to the start
}

func newTimers(t testing.TB, c Config) *Timers {
	t.Helper()
	tm, err := New(c)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return tm
}

// format renders events relative to t0 in minutes.
func format(t0 time.Time, evs []Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%s %s since+%v at+%v", e.Kind, e.Key, e.Since.Sub(t0), e.At.Sub(t0)))
	}
	return out
}

// runOps runs a scenario and checks every step's events.
func runOps(t *testing.T, cfg Config, ops []op) *memStore {
	t.Helper()
	clk := newFakeClock()
	t0 := clk.Now()
	st := newMemStore()
	tm := newTimers(t, cfg)
	for i, o := range ops {
		clk.Advance(o.wait)
		if o.restart {
			st = st.Clone()
			tm = newTimers(t, cfg)
		}
		var evs []Event
		var err error
		switch {
		case o.fire:
			evs, err = tm.Fire(st, clk.Now())
		default:
			evs, err = tm.Observe(st, o.key, o.holds, clk.Now())
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := format(t0, evs); !reflect.DeepEqual(got, o.want) {
			t.Fatalf("step %d (%+v): events %q, want %q", i, o, got, o.want)
		}
	}
	return st
}

func TestScenarios(t *testing.T) {
	m := time.Minute
	resolve := Config{For: 10 * m, Resolve: true}
	noResolve := Config{For: 10 * m}
	tests := []struct {
		name string
		cfg  Config
		ops  []op
	}{
		{"fires once at the deadline", noResolve, []op{
			{key: "fridge", holds: true},
			{wait: 9 * m, fire: true},
			{wait: 59 * time.Second, key: "fridge", holds: true}, // still open, 9m59s
			{wait: time.Second, fire: true, want: []string{"fired fridge since+0s at+10m0s"}},
			{wait: time.Second, fire: true},
			{wait: m, key: "fridge", holds: true},
			{wait: time.Hour, fire: true},
			{key: "fridge", holds: false}, // no resolve configured
			{wait: time.Hour, fire: true},
		}},
		{"resolves after firing", resolve, []op{
			{key: "fridge", holds: true},
			{wait: 10 * m, fire: true, want: []string{"fired fridge since+0s at+10m0s"}},
			{wait: 5 * m, key: "fridge", holds: false, want: []string{"resolved fridge since+0s at+15m0s"}},
			{wait: m, key: "fridge", holds: false},
			{wait: time.Hour, fire: true},
		}},
		{"no fire when the condition breaks early", resolve, []op{
			{key: "fridge", holds: true},
			{wait: 9 * m, key: "fridge", holds: false},
			{wait: time.Hour, fire: true},
			{key: "fridge", holds: false},
		}},
		{"a new episode after a break starts the clock again", noResolve, []op{
			{key: "k", holds: true},
			{wait: 6 * m, key: "k", holds: false},
			{wait: m, key: "k", holds: true},
			{wait: 9 * m, fire: true},
			{wait: m, fire: true, want: []string{"fired k since+7m0s at+17m0s"}},
		}},
		{"an episode after a resolved one fires again", resolve, []op{
			{key: "k", holds: true},
			{wait: 10 * m, fire: true, want: []string{"fired k since+0s at+10m0s"}},
			{key: "k", holds: false, want: []string{"resolved k since+0s at+10m0s"}},
			{wait: m, key: "k", holds: true},
			{wait: 10 * m, fire: true, want: []string{"fired k since+11m0s at+21m0s"}},
		}},
		{"an observation past the deadline fires without a tick", resolve, []op{
			{key: "k", holds: true},
			{wait: 12 * m, key: "k", holds: true, want: []string{"fired k since+0s at+10m0s"}},
			{wait: time.Hour, fire: true},
		}},
		{"a break observed after the deadline fires then resolves", resolve, []op{
			{key: "k", holds: true},
			{wait: 30 * m, key: "k", holds: false, want: []string{"fired k since+0s at+10m0s", "resolved k since+0s at+30m0s"}},
			{wait: time.Hour, fire: true},
		}},
		{"a break observed after the deadline fires, no resolve", noResolve, []op{
			{key: "k", holds: true},
			{wait: 30 * m, key: "k", holds: false, want: []string{"fired k since+0s at+10m0s"}},
		}},
		{"keys are independent and fire in deadline order", noResolve, []op{
			{key: "b", holds: true},
			{wait: m, key: "a", holds: true},
			{wait: m, key: "c", holds: true},
			{key: "a", holds: false},
			{wait: time.Hour, fire: true, want: []string{"fired b since+0s at+10m0s", "fired c since+2m0s at+12m0s"}},
		}},
		{"same deadline orders by key", noResolve, []op{
			{key: "z", holds: true}, {key: "y", holds: true}, {key: "", holds: true},
			{wait: 10 * m, fire: true, want: []string{"fired  since+0s at+10m0s", "fired y since+0s at+10m0s", "fired z since+0s at+10m0s"}},
		}},
		{"survives a restart while pending", resolve, []op{
			{key: "k", holds: true},
			{wait: 5 * m, restart: true, fire: true},
			{wait: 5 * m, restart: true, fire: true, want: []string{"fired k since+0s at+10m0s"}},
			{wait: m, restart: true, fire: true},
			{wait: m, restart: true, key: "k", holds: true},
			{wait: m, restart: true, key: "k", holds: false, want: []string{"resolved k since+0s at+13m0s"}},
		}},
		{"a restart keeps a cancelled timer cancelled", noResolve, []op{
			{key: "k", holds: true},
			{wait: 5 * m, key: "k", holds: false},
			{wait: 10 * m, restart: true, fire: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runOps(t, tt.cfg, tt.ops) })
	}
}

// TestStaleObservation: an observation older than the episode's start
// changes nothing.
func TestStaleObservation(t *testing.T) {
	clk := newFakeClock()
	st := newMemStore()
	tm := newTimers(t, Config{For: time.Minute, Resolve: true})
	if _, err := tm.Observe(st, "k", true, clk.Now()); err != nil {
		t.Fatal(err)
	}
	evs, err := tm.Observe(st, "k", false, clk.Now().Add(-time.Second))
	if err != nil || len(evs) != 0 {
		t.Fatalf("stale observation: %v %v", evs, err)
	}
	evs, err = tm.Fire(st, clk.Now().Add(time.Minute))
	if err != nil || len(evs) != 1 || evs[0].Kind != Fired {
		t.Fatalf("the episode was cancelled by a stale observation: %v %v", evs, err)
	}
}

// TestStateIsCleanedUp: an ended episode leaves nothing in the store.
func TestStateIsCleanedUp(t *testing.T) {
	st := runOps(t, Config{For: time.Minute, Resolve: true}, []op{
		{key: "a", holds: true},
		{key: "b", holds: true},
		{wait: 30 * time.Second, key: "a", holds: false},
		{wait: time.Minute, fire: true, want: []string{"fired b since+0s at+1m0s"}},
		{key: "b", holds: false, want: []string{"resolved b since+0s at+1m30s"}},
	})
	if len(st.M) != 0 {
		t.Fatalf("state left: %q", keys(st))
	}
}

func keys(s *memStore) []string {
	var out []string
	for k := range s.M {
		out = append(out, k)
	}
	return out
}

func TestConfig(t *testing.T) {
	for _, d := range []time.Duration{0, -time.Second} {
		if _, err := New(Config{For: d}); !errors.Is(err, ErrConfig) {
			t.Errorf("New(For=%v) = %v, want ErrConfig", d, err)
		}
	}
	if _, err := New(Config{For: time.Nanosecond}); err != nil {
		t.Errorf("New(1ns) = %v", err)
	}
}

// TestStoreErrors: a failing store surfaces a wrapped error; after the
// caller rolls back, a retry gives the right events.
func TestStoreErrors(t *testing.T) {
	cfg := Config{For: time.Minute, Resolve: true}
	t0 := newFakeClock().Now()
	for fail := 1; fail <= 3; fail++ {
		st := newMemStore()
		tm := newTimers(t, cfg)
		if _, err := tm.Observe(st, "k", true, t0); err != nil {
			t.Fatal(err)
		}
		snap := st.Clone()
		st.FailAfter, st.Writes = fail, 0
		_, err := tm.Fire(st, t0.Add(time.Minute))
		if err == nil {
			continue
		}
		if !errors.Is(err, errInjected) || !strings.Contains(err.Error(), "timer") {
			t.Fatalf("fail at %d: error %v", fail, err)
		}
		*st = *snap
		evs, err := tm.Fire(st, t0.Add(time.Minute))
		if err != nil || len(evs) != 1 || evs[0].Kind != Fired {
			t.Fatalf("fail at %d: retry %v %v", fail, evs, err)
		}
	}
}

func FuzzDecodeEpisode(f *testing.F) {
	f.Add(episode{state: stPending, since: 12345}.encode())
	f.Add(episode{state: stFired, since: -1}.encode())
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEpisode(b)
		if err != nil {
			return
		}
		if out := e.encode(); string(out) != string(b) {
			t.Fatalf("round trip % x -> % x", b, out)
		}
	})
}

func FuzzParseDeadlineKey(f *testing.F) {
	f.Add(deadlineKey(-5, "dev-1"))
	f.Add([]byte("d"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, key, ok := parseDeadlineKey(b)
		if !ok {
			return
		}
		if out := deadlineKey(d, key); string(out) != string(b) {
			t.Fatalf("round trip %x -> %x", b, out)
		}
	})
}

// Has tells whether a key has an episode in progress: from the first
// holding observation, through its firing, until it stops holding; also
// for a new Timers over the same store.
func TestSince(t *testing.T) {
	st := newMemStore()
	tm := newTimers(t, Config{For: time.Minute, Resolve: true})
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	steps := []struct {
		at    time.Duration
		holds bool
		fire  bool
		want  bool
		since time.Duration // the episode's start, when want
	}{
		{0, false, false, false, 0},
		{time.Second, true, false, true, time.Second},
		{2 * time.Minute, true, true, true, time.Second}, // fired
		{3 * time.Minute, false, false, false, 0},
		{4 * time.Minute, true, false, true, 4 * time.Minute},
		{4*time.Minute + time.Second, false, false, false, 0}, // ended early
	}
	for i, s := range steps {
		var err error
		if s.fire {
			_, err = tm.Fire(st, t0.Add(s.at))
		} else {
			_, err = tm.Observe(st, "k", s.holds, t0.Add(s.at))
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range []*Timers{tm, newTimers(t, Config{For: time.Minute, Resolve: true})} {
			since, ok, err := x.Since(st, "k")
			if err != nil || ok != s.want || (ok && !since.Equal(t0.Add(s.since))) {
				t.Fatalf("step %d: Since = %v, %v, %v; want %v, %v", i, since, ok, err, t0.Add(s.since), s.want)
			}
		}
	}
}

// scanCounter is a store that counts its scans.
type scanCounter struct {
	*memStore
	scans int
}

func (s *scanCounter) Scan(lo, hi []byte, fn func(k, v []byte) bool) error {
	s.scans++
	return s.memStore.Scan(lo, hi, fn)
}

// Fire reads the store only once a pending episode may be due: before
// the earliest deadline, and with nothing pending, it scans nothing and
// fires nothing; at a deadline it fires as before, after a restart too.
func TestFireReadsNothingBeforeTheNextDeadline(t *testing.T) {
	st := &scanCounter{memStore: newMemStore()}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tm := newTimers(t, Config{For: 10 * time.Second})
	observe := func(key string, at time.Duration) {
		t.Helper()
		if _, err := tm.Observe(st, key, true, t0.Add(at)); err != nil {
			t.Fatal(err)
		}
	}
	fire := func(at time.Duration, wantScans bool, want ...string) {
		t.Helper()
		before := st.scans
		evs, err := tm.Fire(st, t0.Add(at))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range evs {
			got = append(got, e.Key)
		}
		if !reflect.DeepEqual(got, want) || (st.scans > before) != wantScans {
			t.Errorf("Fire at +%v: %q with %d scans; want %q, scans %t", at, got, st.scans-before, want, wantScans)
		}
	}
	observe("k1", 0) // loads: one scan
	fire(time.Second, false)
	fire(9*time.Second, false)
	fire(10*time.Second, true, "k1")
	fire(20*time.Second, false) // nothing pending

	observe("k3", 50*time.Second)
	observe("k4", 55*time.Second)
	fire(60*time.Second, true, "k3")
	fire(62*time.Second, false) // k4 is due at +65s
	tm = newTimers(t, Config{For: 10 * time.Second})
	fire(63*time.Second, true) // a new Timers loads its episodes
	fire(64*time.Second, false)
	fire(65*time.Second, true, "k4")
	fire(90*time.Second, false)
}
