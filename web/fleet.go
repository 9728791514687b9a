package web

import (
	"math"
	"slices"
	"strings"
	"sync"
)

// rateTau is the time constant of a thing's message rate: an
// exponentially decaying count of publishes, so the rate is about the
// last minute's.
const rateTau = 60_000.0 // ms

// anomalyWindow is how long a flagged point counts as an open anomaly.
const anomalyWindow = 3_600_000 // ms

// maxAnomalyTimes bounds the anomaly times kept per thing.
const maxAnomalyTimes = 100

// Thing is one row of the fleet page.
type Thing struct {
	Name      string `json:"thing"`
	Connected bool   `json:"connected"`
	// FirstSeen and LastSeen are the receive times (Unix ms) of the
	// thing's first and latest events.
	FirstSeen int64 `json:"first_seen"`
	LastSeen  int64 `json:"last_seen"`
	// Messages counts its publishes.
	Messages  int64  `json:"messages"`
	LastTopic string `json:"last_topic,omitempty"`
	// Rate is publishes per second over about the last minute.
	Rate float64 `json:"rate"`
	// Anomalies counts points a rule flagged in the last hour.
	Anomalies int `json:"anomalies"`
}

// thingState is what the index keeps of a thing.
type thingState struct {
	name, lower string
	connected   bool
	firstSeen   int64
	lastSeen    int64
	messages    int64
	lastTopic   string
	// rate is the decayed publish count per ms·tau at rateAt (ms).
	rate      float64
	rateAt    int64
	anomalies []int64 // flag times (ms), oldest first
}

func (s *thingState) row(now int64) Thing {
	t := Thing{Name: s.name, Connected: s.connected, FirstSeen: s.firstSeen, LastSeen: s.lastSeen,
		Messages: s.messages, LastTopic: s.lastTopic, Rate: decayedRate(s.rate, s.rateAt, now)}
	for _, at := range s.anomalies {
		if at > now-anomalyWindow {
			t.Anomalies++
		}
	}
	return t
}

// decayedRate is rate (publishes per tau, at ms at) decayed to now and
// expressed per second.
func decayedRate(rate float64, at, now int64) float64 {
	if rate == 0 {
		return 0
	}
	if dt := float64(now - at); dt > 0 {
		rate *= math.Exp(-dt / rateTau)
	}
	return rate / rateTau * 1000
}

// fleet is the dashboard's index of things: built from ClickHouse's
// telemetry and presence tables at start, then kept current from the
// events topic. Safe for concurrent use.
type fleet struct {
	mu     sync.Mutex
	things map[string]*thingState
	// dirty are the things changed since the last takeDirty.
	dirty map[string]struct{}
}

func newFleet() *fleet {
	return &fleet{things: map[string]*thingState{}, dirty: map[string]struct{}{}}
}

// reset forgets every thing.
func (f *fleet) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.things)
	clear(f.dirty)
}

// get returns the state of name, created when new; f.mu is held.
func (f *fleet) get(name string) *thingState {
	s := f.things[name]
	if s == nil {
		s = &thingState{name: name, lower: strings.ToLower(name)}
		f.things[name] = s
	}
	f.dirty[name] = struct{}{}
	return s
}

// seen notes an event of thing at ms (any type); f.mu is held.
func (s *thingState) seen(at int64) {
	if s.firstSeen == 0 || at < s.firstSeen {
		s.firstSeen = at
	}
	if at > s.lastSeen {
		s.lastSeen = at
	}
}

// publish notes a publish of thing on topic at ms.
func (f *fleet) publish(thing, topic string, at int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.get(thing)
	s.seen(at)
	s.messages++
	if at >= s.lastSeen {
		s.lastTopic = topic
	}
	// The decayed count: +1 per publish, e^(-dt/tau) in between.
	if s.rateAt != 0 && at > s.rateAt {
		s.rate *= math.Exp(-float64(at-s.rateAt) / rateTau)
	}
	if at > s.rateAt {
		s.rateAt = at
	}
	s.rate++
}

// presence notes a connected (true) or disconnected event of thing at
// ms. An event older than the latest presence already applied cannot
// arrive (one thing's events are one partition, applied in order), so
// the latest applied wins.
func (f *fleet) presence(thing string, connected bool, at int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.get(thing)
	s.seen(at)
	s.connected = connected
}

// other notes any other event of thing (subscribed, ...) at ms.
func (f *fleet) other(thing string, at int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.get(thing).seen(at)
}

// anomaly notes a point of thing flagged at ms.
func (f *fleet) anomaly(thing string, at int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.get(thing)
	i, _ := slices.BinarySearch(s.anomalies, at)
	s.anomalies = slices.Insert(s.anomalies, i, at)
	if len(s.anomalies) > maxAnomalyTimes {
		s.anomalies = slices.Delete(s.anomalies, 0, len(s.anomalies)-maxAnomalyTimes)
	}
}

// seed sets what ClickHouse knows of a thing's publishes: their count,
// first and last receive time and the latest topic.
func (f *fleet) seedTelemetry(thing string, messages, first, last int64, topic string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.get(thing)
	s.seen(first)
	s.seen(last)
	s.messages += messages
	if last >= s.lastSeen {
		s.lastTopic = topic
	}
}

// seedPresence sets what ClickHouse knows of a thing's connection: the
// latest presence event and the times of the first and latest.
func (f *fleet) seedPresence(thing string, connected bool, first, last int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.get(thing)
	s.seen(first)
	s.seen(last)
	s.connected = connected
}

// thing returns the row of name.
func (f *fleet) thing(name string, now int64) (Thing, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.things[name]
	if !ok {
		return Thing{}, false
	}
	return s.row(now), true
}

// takeDirty returns the rows changed since the last call, at most max
// (more: reload is true and the rows are left out).
func (f *fleet) takeDirty(now int64, max int) (rows []Thing, reload bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.dirty) == 0 {
		return nil, false
	}
	if len(f.dirty) > max {
		clear(f.dirty)
		return nil, true
	}
	rows = make([]Thing, 0, len(f.dirty))
	for name := range f.dirty {
		rows = append(rows, f.things[name].row(now))
	}
	clear(f.dirty)
	slices.SortFunc(rows, func(a, b Thing) int { return strings.Compare(a.Name, b.Name) })
	return rows, false
}

// FleetPage is one page of the fleet list.
type FleetPage struct {
	// Total is the number of things known; Connected of those connected;
	// Matched of those the query's filter and search select.
	Total     int     `json:"total"`
	Connected int     `json:"connected"`
	Matched   int     `json:"matched"`
	Offset    int     `json:"offset"`
	Things    []Thing `json:"things"`
	// Ready is false while the index is still being built at start.
	Ready bool `json:"ready"`
}

// list answers q at now.
func (f *fleet) list(q FleetQuery, now int64) FleetPage {
	search := strings.ToLower(q.Search)
	f.mu.Lock()
	page := FleetPage{Total: len(f.things), Offset: q.Offset}
	rows := make([]Thing, 0, min(len(f.things), 1024))
	for _, s := range f.things {
		if s.connected {
			page.Connected++
		}
		if search != "" && !strings.Contains(s.lower, search) {
			continue
		}
		switch q.Status {
		case StatusConnected:
			if !s.connected {
				continue
			}
		case StatusOffline:
			if s.connected {
				continue
			}
		}
		r := s.row(now)
		if q.Status == StatusAnomalous && r.Anomalies == 0 {
			continue
		}
		rows = append(rows, r)
	}
	f.mu.Unlock()
	page.Matched = len(rows)
	slices.SortFunc(rows, q.compare)
	if q.Offset < len(rows) {
		page.Things = rows[q.Offset:min(len(rows), q.Offset+q.Limit)]
	}
	if page.Things == nil {
		page.Things = []Thing{}
	}
	return page
}
