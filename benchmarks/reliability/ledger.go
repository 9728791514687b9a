package reliability

import (
	"fmt"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/segmentio/encoding/json"
)

// Ledger remembers every publish a load sent and how the server answered
// it, so that what was acknowledged can be looked for in the log. A
// publish is known by its id (PublishID of its payload). Safe for
// concurrent use.
type Ledger struct {
	mu      sync.Mutex
	sent    int
	acked   map[string]time.Time // id -> when its PUBACK arrived
	refused map[byte]int         // PUBACK reason code -> publishes
	last    time.Time            // the last PUBACK of success
}

// NewLedger returns an empty Ledger.
func NewLedger() *Ledger {
	return &Ledger{acked: map[string]time.Time{}, refused: map[byte]int{}}
}

// Sent notes a publish written to the server.
func (l *Ledger) Sent() {
	l.mu.Lock()
	l.sent++
	l.mu.Unlock()
}

// Answered notes the PUBACK of publish id: acknowledged when code is
// below 0x80, refused with that code otherwise.
func (l *Ledger) Answered(id string, code byte, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if code >= 0x80 {
		l.refused[code]++
		return
	}
	l.acked[id] = at
	if at.After(l.last) {
		l.last = at
	}
}

// Stats are a Ledger's counts.
type Stats struct {
	// Sent is how many publishes were written to the server.
	Sent int
	// Acked is how many were acknowledged (PUBACK below 0x80).
	Acked int
	// Refused counts the publishes refused, by PUBACK reason code.
	Refused map[byte]int
	// LastAck is when the last acknowledgement arrived.
	LastAck time.Time
}

// Stats returns the counts so far.
func (l *Ledger) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Sent: l.sent, Acked: len(l.acked), Refused: maps.Clone(l.refused), LastAck: l.last}
}

// FirstAckAfter returns when the first acknowledgement after t arrived
// (false when none did).
func (l *Ledger) FirstAckAfter(t time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var first time.Time
	for _, at := range l.acked {
		if at.After(t) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first, !first.IsZero()
}

// AwaitAckAfter waits up to timeout for an acknowledgement after t and
// returns when it arrived (false when none came in time).
func (l *Ledger) AwaitAckAfter(t time.Time, timeout time.Duration) (time.Time, bool) {
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if at, ok := l.FirstAckAfter(t); ok || time.Now().After(deadline) {
			return at, ok
		}
	}
}

// AckedBetween counts the publishes acknowledged in [from, to).
func (l *Ledger) AckedBetween(from, to time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, at := range l.acked {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// Check is the Ledger compared with the publishes in the log.
type Check struct {
	// Acked is how many publishes were acknowledged.
	Acked int
	// Logged is how many of the load's publishes the log holds (a
	// publish logged twice counts twice).
	Logged int
	// Lost are the acknowledged publishes the log does not hold, with
	// when each was acknowledged.
	Lost map[string]time.Time
	// Duplicated are the publishes the log holds more than once, with
	// how many times.
	Duplicated map[string]int
	// Unacked is how many logged publishes were never acknowledged (in
	// flight at a fault: the log may keep what a client was not told).
	Unacked int
}

// Check compares the acknowledged publishes with logged, the ids of the
// load's publishes found in the log (in any order, each as often as it
// is there).
func (l *Ledger) Check(logged []string) Check {
	seen := make(map[string]int, len(logged))
	for _, id := range logged {
		seen[id]++
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c := Check{Acked: len(l.acked), Logged: len(logged), Lost: map[string]time.Time{}, Duplicated: map[string]int{}}
	for id, at := range l.acked {
		if seen[id] == 0 {
			c.Lost[id] = at
		}
	}
	for id, n := range seen {
		if n > 1 {
			c.Duplicated[id] = n
		}
		if _, ok := l.acked[id]; !ok {
			c.Unacked++
		}
	}
	return c
}

// LostBetween counts the lost publishes acknowledged in [from, to).
func (c Check) LostBetween(from, to time.Time) int {
	n := 0
	for _, at := range c.Lost {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// Problems describes what is wrong (lost or duplicated publishes) with
// up to max examples of each, or returns nil.
func (c Check) Problems(max int) []string {
	var out []string
	if len(c.Lost) > 0 {
		out = append(out, fmt.Sprintf("%d acknowledged publishes are not in the log, e.g. %v", len(c.Lost), examples(keys(c.Lost), max)))
	}
	if len(c.Duplicated) > 0 {
		var ex []string
		for _, id := range examples(keys(c.Duplicated), max) {
			ex = append(ex, fmt.Sprintf("%s ×%d", id, c.Duplicated[id]))
		}
		out = append(out, fmt.Sprintf("%d publishes are in the log more than once, e.g. %v", len(c.Duplicated), ex))
	}
	return out
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func examples(s []string, max int) []string {
	if len(s) > max {
		return s[:max]
	}
	return s
}

// TelemetryPayload is the payload of telemetry publish seq of device
// dev; PublishID reads its id back.
func TelemetryPayload(dev string, seq int) []byte {
	return fmt.Appendf(nil, `{"dev":%s,"seq":%d,"v":%d.5}`, jsonString(dev), seq, seq%100)
}

// ShadowPayload is the payload of shadow update seq of device dev (to
// $aws/things/{dev}/shadow/update): it reports seq, and its clientToken
// is the publish's id.
func ShadowPayload(dev string, seq int) []byte {
	return fmt.Appendf(nil, `{"state":{"reported":{"seq":%d}},"clientToken":%s}`, seq, jsonString(fmt.Sprintf("%s/%d", dev, seq)))
}

// jsonString is s as a JSON string.
func jsonString(s string) []byte {
	b, _ := json.Marshal(s)
	return b
}

// PublishID returns the id of a publish from its payload, "<dev>/<seq>":
// the dev and seq fields of a TelemetryPayload, or the clientToken of a
// ShadowPayload. ok is false for any other payload.
func PublishID(payload []byte) (id string, ok bool) {
	var p struct {
		Dev         string `json:"dev"`
		Seq         *int   `json:"seq"`
		ClientToken string `json:"clientToken"`
	}
	if json.Unmarshal(payload, &p) != nil {
		return "", false
	}
	switch {
	case p.Dev != "" && p.Seq != nil:
		return fmt.Sprintf("%s/%d", p.Dev, *p.Seq), true
	case p.ClientToken != "":
		return p.ClientToken, true
	}
	return "", false
}
