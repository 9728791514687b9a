// Package timer implements duration conditions, rule SQL's "WHERE <cond>
// FOR <duration>": per key, a condition that must hold for a duration
// before the rule fires (the fridge door open for 10 minutes, a device
// offline for 15 minutes), once per episode, and optionally a resolved
// event when it stops holding after having fired.
//
// It is a pure library: the caller evaluates the condition on each event
// and reports it with Observe, and drives time with Fire (the runtime's
// tick, or a fake clock in tests). Time is always passed in, never read.
// Timers go through a Store (the partition's key space, e.g. a
// *processors.Tx), so a timer set before a restart fires after it.
//
// # Semantics
//
// For each key an episode starts with the first Observe(key, true, at)
// while the key is idle; the condition is taken to hold from then until an
// Observe(key, false, ...). The episode fires once, at Since+For:
//
//   - Fire(now) returns every pending episode whose Since+For <= now;
//   - an Observe at or after Since+For fires it too (before anything else
//     that observation does), so the outcome does not depend on how often
//     Fire is called: a condition observed false only after its deadline
//     did hold for the duration.
//
// Observe(key, false, at) ends the episode: before the deadline, nothing
// is returned (the condition broke early: no fire); after it has fired,
// a Resolved event is returned when Config.Resolve is on. Observations
// older than the episode's start are stale and ignored.
package timer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Store is the key-value state Timers read and write: the partition's key
// space for one rule. It has the shape of processors.Tx's state methods,
// so a *processors.Tx satisfies it. Set and Delete must not retain the
// slices they are given.
type Store interface {
	Get(key []byte) ([]byte, bool, error)
	Set(key, value []byte) error
	Delete(key []byte) error
	// Scan calls fn for each key in [lower, upper) in order, until fn
	// returns false. The slices are valid only during the call.
	Scan(lower, upper []byte, fn func(key, value []byte) bool) error
}

// Config describes one duration condition.
type Config struct {
	// For is how long the condition must hold before firing; > 0.
	For time.Duration
	// Resolve makes Observe return a Resolved event when the condition
	// stops holding after having fired.
	Resolve bool
}

// ErrConfig is wrapped by configuration errors.
var ErrConfig = errors.New("timer: invalid config")

// Validate reports a setting out of range.
func (c Config) Validate() error {
	if c.For <= 0 {
		return fmt.Errorf("%w: duration %v: must be positive", ErrConfig, c.For)
	}
	return nil
}

// Kind says what an Event reports.
type Kind int

const (
	// Fired: the condition has held for the duration.
	Fired Kind = iota + 1
	// Resolved: the condition stopped holding after having fired.
	Resolved
)

// String returns "fired" or "resolved".
func (k Kind) String() string {
	switch k {
	case Fired:
		return "fired"
	case Resolved:
		return "resolved"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Event is a duration condition firing or resolving for one key.
type Event struct {
	// Key is the condition's key (e.g. the thing name).
	Key string
	// Kind is Fired or Resolved.
	Kind Kind
	// Since is when the episode started: the first observation of the
	// condition holding.
	Since time.Time
	// At is when the event happened: Since+For for Fired, the observation
	// that ended the episode for Resolved.
	At time.Time
}

// Key layout:
//
//	"k" | key                 -> episode: version, state (pending/fired), since (ns, 8 bytes)
//	"d" | deadline | key      -> empty; a pending episode's timer, deadline in
//	                             ns with the sign bit flipped (big endian) so
//	                             keys sort by deadline
const (
	prefixEpisode  = 'k'
	prefixDeadline = 'd'
)

const (
	stPending byte = 1
	stFired   byte = 2

	episodeVersion = 1
	episodeSize    = 1 + 1 + 8
)

// episode is one key's current episode.
type episode struct {
	state byte
	since int64 // ns since the Unix epoch
}

func (e episode) encode() []byte {
	b := make([]byte, 0, episodeSize)
	b = append(b, episodeVersion, e.state)
	return binary.BigEndian.AppendUint64(b, uint64(e.since))
}

func decodeEpisode(b []byte) (episode, error) {
	if len(b) != episodeSize || b[0] != episodeVersion || (b[1] != stPending && b[1] != stFired) {
		return episode{}, fmt.Errorf("timer: corrupt episode (% x)", b)
	}
	return episode{state: b[1], since: int64(binary.BigEndian.Uint64(b[2:]))}, nil
}

func episodeKey(key string) []byte { return append([]byte{prefixEpisode}, key...) }

func deadlineKey(deadline int64, key string) []byte {
	b := make([]byte, 0, 9+len(key))
	b = append(b, prefixDeadline)
	b = binary.BigEndian.AppendUint64(b, uint64(deadline)^(1<<63))
	return append(b, key...)
}

func parseDeadlineKey(b []byte) (int64, string, bool) {
	if len(b) < 9 || b[0] != prefixDeadline {
		return 0, "", false
	}
	return int64(binary.BigEndian.Uint64(b[1:9]) ^ (1 << 63)), string(b[9:]), true
}

// Timers runs one duration condition over one partition. It keeps every
// active episode in memory (read with one scan on first use; a few dozen
// bytes plus the key each) and writes through to the store on every
// change, so an Observe of a condition that does not change state touches
// no store at all. It is not safe for concurrent use.
type Timers struct {
	cfg      Config
	loaded   bool
	episodes map[string]episode
	// next is at or before the earliest deadline of a pending episode
	// (math.MaxInt64: none), once loaded: Fire before it has nothing to
	// fire and reads nothing.
	next int64
}

// New returns Timers for cfg (validated).
func New(cfg Config) (*Timers, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Timers{cfg: cfg, episodes: make(map[string]episode)}, nil
}

// Reset drops what is held in memory; the next call reads the store
// again. Call it when the store was rolled back or replaced. Any error
// from Observe or Fire resets by itself.
func (t *Timers) Reset() {
	t.loaded = false
	clear(t.episodes)
}

func (t *Timers) load(st Store) error {
	if t.loaded {
		return nil
	}
	clear(t.episodes)
	t.next = math.MaxInt64
	var bad error
	err := st.Scan([]byte{prefixEpisode}, []byte{prefixEpisode + 1}, func(k, v []byte) bool {
		e, err := decodeEpisode(v)
		if err != nil {
			bad = fmt.Errorf("key %q: %w", k[1:], err)
			return false
		}
		t.episodes[string(k[1:])] = e
		if e.state == stPending {
			t.next = min(t.next, e.since+int64(t.cfg.For))
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("timer: load episodes: %w", err)
	}
	if bad != nil {
		return bad
	}
	t.loaded = true
	return nil
}

// nanos converts a time to ns since the epoch, clamped to int64's range
// minus the duration so deadlines never overflow.
func (t *Timers) nanos(at time.Time) int64 {
	lo, hi := int64(math.MinInt64)+int64(t.cfg.For), int64(math.MaxInt64)-int64(t.cfg.For)
	if at.Before(time.Unix(0, lo)) {
		return lo
	}
	if at.After(time.Unix(0, hi)) {
		return hi
	}
	return at.UnixNano()
}

// Observe reports whether the condition holds for key at time at, and
// returns the events this causes (at most a Fired then a Resolved).
func (t *Timers) Observe(st Store, key string, holds bool, at time.Time) ([]Event, error) {
	if err := t.load(st); err != nil {
		t.Reset()
		return nil, err
	}
	evs, err := t.observe(st, key, holds, t.nanos(at))
	if err != nil {
		t.Reset()
		return nil, err
	}
	return evs, nil
}

func (t *Timers) observe(st Store, key string, holds bool, at int64) ([]Event, error) {
	e, active := t.episodes[key]
	if !active {
		if !holds {
			return nil, nil
		}
		e = episode{state: stPending, since: at}
		if err := t.put(st, key, e); err != nil {
			return nil, err
		}
		if err := st.Set(deadlineKey(at+int64(t.cfg.For), key), nil); err != nil {
			return nil, fmt.Errorf("timer: set timer of %q: %w", key, err)
		}
		t.next = min(t.next, at+int64(t.cfg.For))
		return nil, nil
	}
	if at < e.since {
		return nil, nil // stale observation
	}
	var evs []Event
	deadline := e.since + int64(t.cfg.For)
	if e.state == stPending && at >= deadline {
		ev, err := t.fire(st, key, e)
		if err != nil {
			return nil, err
		}
		evs = append(evs, ev)
		e.state = stFired
	}
	if holds {
		return evs, nil
	}
	// The condition stopped holding: the episode ends.
	if e.state == stPending {
		if err := st.Delete(deadlineKey(deadline, key)); err != nil {
			return nil, fmt.Errorf("timer: cancel timer of %q: %w", key, err)
		}
	} else if t.cfg.Resolve {
		evs = append(evs, Event{Key: key, Kind: Resolved, Since: time.Unix(0, e.since), At: time.Unix(0, at)})
	}
	delete(t.episodes, key)
	if err := st.Delete(episodeKey(key)); err != nil {
		return nil, fmt.Errorf("timer: end episode of %q: %w", key, err)
	}
	return evs, nil
}

// put writes an episode through to memory and the store.
func (t *Timers) put(st Store, key string, e episode) error {
	t.episodes[key] = e
	if err := st.Set(episodeKey(key), e.encode()); err != nil {
		return fmt.Errorf("timer: write episode of %q: %w", key, err)
	}
	return nil
}

// fire marks a pending episode fired, removes its timer and returns the
// Fired event.
func (t *Timers) fire(st Store, key string, e episode) (Event, error) {
	deadline := e.since + int64(t.cfg.For)
	if err := st.Delete(deadlineKey(deadline, key)); err != nil {
		return Event{}, fmt.Errorf("timer: clear timer of %q: %w", key, err)
	}
	e.state = stFired
	if err := t.put(st, key, e); err != nil {
		return Event{}, err
	}
	return Event{Key: key, Kind: Fired, Since: time.Unix(0, e.since), At: time.Unix(0, deadline)}, nil
}

// Fire returns a Fired event for every pending episode whose deadline
// (Since+For) is at or before now, in order of deadline, then key. Each
// episode fires once.
func (t *Timers) Fire(st Store, now time.Time) ([]Event, error) {
	if err := t.load(st); err != nil {
		t.Reset()
		return nil, err
	}
	evs, err := t.fireDue(st, t.nanos(now))
	if err != nil {
		t.Reset()
		return nil, err
	}
	return evs, nil
}

func (t *Timers) fireDue(st Store, now int64) ([]Event, error) {
	if now < t.next {
		return nil, nil // no pending episode is due
	}
	var due [][]byte
	err := st.Scan([]byte{prefixDeadline}, deadlineKey(now+1, ""), func(k, _ []byte) bool {
		due = append(due, append([]byte(nil), k...))
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("timer: scan due timers: %w", err)
	}
	var evs []Event
	for _, k := range due {
		deadline, key, ok := parseDeadlineKey(k)
		if !ok {
			return nil, fmt.Errorf("timer: corrupt timer key %x", k)
		}
		e, active := t.episodes[key]
		if !active || e.state != stPending || e.since+int64(t.cfg.For) != deadline {
			// An orphan (cannot happen through this API): drop it.
			if err := st.Delete(k); err != nil {
				return nil, fmt.Errorf("timer: drop stale timer of %q: %w", key, err)
			}
			continue
		}
		ev, err := t.fire(st, key, e)
		if err != nil {
			return nil, err
		}
		evs = append(evs, ev)
	}
	// Every timer due is gone: the next one is the first left.
	t.next = math.MaxInt64
	err = st.Scan(deadlineKey(now+1, ""), []byte{prefixDeadline + 1}, func(k, _ []byte) bool {
		if d, _, ok := parseDeadlineKey(k); ok {
			t.next = d
		}
		return false
	})
	if err != nil {
		return nil, fmt.Errorf("timer: scan the next timer: %w", err)
	}
	return evs, nil
}

// Since returns when key's episode in progress (pending or fired)
// began, and whether one is: without one, Observe(key, false, ...) does
// nothing; an observation older than its start is stale, and Observe
// ignores it.
func (t *Timers) Since(st Store, key string) (time.Time, bool, error) {
	if err := t.load(st); err != nil {
		t.Reset()
		return time.Time{}, false, err
	}
	e, ok := t.episodes[key]
	if !ok {
		return time.Time{}, false, nil
	}
	return time.Unix(0, e.since), true, nil
}

// Active returns the number of keys with an episode in progress (pending
// or fired), for metrics.
func (t *Timers) Active(st Store) (int, error) {
	if err := t.load(st); err != nil {
		t.Reset()
		return 0, err
	}
	return len(t.episodes), nil
}
