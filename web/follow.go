package web

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/iotpipe/iotpipe/schemas/payload"
	"github.com/iotpipe/iotpipe/sinks/clickhouse"
)

// How far back the dashboard reads derived topics when it starts.
const (
	// recentWindow: the anomalies (open anomalies are the last hour's)
	// and the actions (a thing's recent commands).
	recentWindow = time.Hour
	// dlqKeep is how many dead letters the rules page shows, the newest.
	dlqKeep = 200
	// commandsKeep is how many recent commands are kept per thing, and
	// commandThings for how many things.
	commandsKeep  = 20
	commandThings = 20_000
	// maxShown bounds a payload or a value shown on a page.
	maxShown = 4 << 10
)

// follow builds the fleet index (seeded from ClickHouse when the node
// has it) and then follows the events, shadows, anomalies, actions and
// dead-letter topics until ctx ends, feeding the index and the live
// streams.
func (d *Dashboard) follow(ctx context.Context) error {
	t := d.opts.Topics
	parts := map[string]int32{}
	for _, topic := range []string{t.Events, t.Shadows, t.Anomalies, t.Actions, t.DLQ} {
		n, err := eventlog.PartitionCount(ctx, d.opts.Log.Client, topic)
		if err != nil {
			return fmt.Errorf("dashboard: partitions of %s: %w", topic, err)
		}
		parts[topic] = n
	}
	bounds, err := seedFleet(ctx, d.query, d.fleet, parts[t.Events])
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		// The whole retained log instead: slower, as exact.
		d.log.Warn("dashboard: the fleet index is built from the log's retained events instead of ClickHouse", "err", err)
		d.fleet.reset()
		bounds = seedBounds{telemetry: make([]int64, parts[t.Events]), presence: make([]int64, parts[t.Events])}
		for p := range bounds.telemetry {
			bounds.telemetry[p], bounds.presence[p] = -1, -1
		}
	}
	d.bounds = bounds
	since := time.Now().Add(-recentWindow).UnixMilli()
	offsets := map[string]map[int32]kgo.Offset{}
	for topic, n := range parts {
		m := map[int32]kgo.Offset{}
		for p := range n {
			switch topic {
			case t.Events:
				m[p] = kgo.NewOffset().At(bounds.start(p))
			case t.Shadows:
				m[p] = kgo.NewOffset().AtEnd()
			case t.DLQ:
				m[p] = kgo.NewOffset().AtEnd().Relative(-dlqKeep)
			default:
				m[p] = kgo.NewOffset().AfterMilli(since)
			}
		}
		offsets[topic] = m
	}
	cl, err := d.opts.Log.Client(kgo.ConsumePartitions(offsets), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return fmt.Errorf("dashboard: log client: %w", err)
	}
	defer cl.Close()
	d.ready.Store(true)
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(topic string, p int32, err error) {
			d.log.Warn("dashboard: reading the log", "topic", topic, "partition", p, "err", err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			switch r.Topic {
			case t.Events:
				d.onEvent(r)
			case t.Shadows:
				d.onShadow(r)
			case t.Anomalies:
				d.onAnomaly(r)
			case t.Actions:
				d.onAction(r)
			case t.DLQ:
				d.dlq.add(r)
			}
		})
	}
}

// LiveEvent is an event of a thing as its page's stream sends it.
type LiveEvent struct {
	Type      string `json:"type"`
	Topic     string `json:"topic,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Received  int64  `json:"received"` // Unix ms
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Payload   string `json:"payload,omitempty"`
	// Metrics are the publish's numeric fields, flattened as ClickHouse
	// stores them (a.b, c.0, value).
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

func (d *Dashboard) onEvent(r *kgo.Record) {
	env, err := schemas.DecodeEnvelopeView(r.Headers)
	if err != nil {
		return
	}
	thing := string(r.Key)
	at := env.ReceivedAt / 1e6
	p := int(r.Partition)
	switch schemas.EventType(env.Type) {
	case schemas.EventPublish:
		if p >= len(d.bounds.telemetry) || r.Offset > d.bounds.telemetry[p] {
			d.fleet.publish(thing, string(env.Topic), at)
		}
	case schemas.EventConnected, schemas.EventDisconnected:
		if p >= len(d.bounds.presence) || r.Offset > d.bounds.presence[p] {
			d.fleet.presence(thing, schemas.EventType(env.Type) == schemas.EventConnected, at)
		}
	default:
		d.fleet.other(thing, at)
	}
	if !d.hub.watched(thing) {
		return
	}
	ev := LiveEvent{Type: string(env.Type), Topic: string(env.Topic), ClientID: string(env.ClientID), Received: at,
		Partition: r.Partition, Offset: r.Offset, Payload: shown(r.Value)}
	if schemas.EventType(env.Type) == schemas.EventPublish {
		if v, err := payload.Decode(r.Value); err == nil {
			ev.Metrics = clickhouse.Flatten(v, nil)
		}
	}
	d.hub.thing(thing, "event", ev)
}

// shown is b as text for a page: cut at maxShown, invalid UTF-8 replaced.
func shown(b []byte) string {
	cut := len(b) > maxShown
	if cut {
		b = b[:maxShown]
	}
	s := string(b)
	if !utf8.ValidString(s) {
		s = fmt.Sprintf("(%d bytes, not UTF-8)", len(b))
	}
	if cut {
		s += "…"
	}
	return s
}

// ShadowChange says a shadow changed; the page reads the shadow again
// through GET /things/{thing}/shadow (which its token must allow).
type ShadowChange struct {
	Thing string `json:"thing"`
	// Shadow is the named shadow's name, "" for the classic shadow.
	Shadow  string `json:"shadow"`
	Version int64  `json:"version,omitempty"`
	Deleted bool   `json:"deleted"`
}

// onShadow reads a record of the shadows topic: key thing[/name], value
// the stored document (empty: deleted).
func (d *Dashboard) onShadow(r *kgo.Record) {
	thing, name, _ := strings.Cut(string(r.Key), "/")
	if thing == "" || !d.hub.watched(thing) {
		return
	}
	c := ShadowChange{Thing: thing, Shadow: name, Deleted: len(r.Value) == 0}
	if !c.Deleted {
		var doc struct {
			Version int64 `json:"version"`
		}
		_ = json.Unmarshal(r.Value, &doc)
		c.Version = doc.Version
	}
	d.hub.thing(thing, "shadow", c)
}

func (d *Dashboard) onAnomaly(r *kgo.Record) {
	var a schemas.Anomaly
	if json.Unmarshal(r.Value, &a) != nil || a.Thing == "" || !a.Anomaly {
		return
	}
	d.fleet.anomaly(a.Thing, r.Timestamp.UnixMilli())
	a.Output = nil
	d.hub.thing(a.Thing, "anomaly", a)
}

// CommandRef is a command a rule sent to a thing; its status is at
// GET /api/commands/{id}.
type CommandRef struct {
	ID      string `json:"id"`
	Rule    string `json:"rule"`
	FiredAt int64  `json:"fired_at"`
}

func (d *Dashboard) onAction(r *kgo.Record) {
	var a schemas.Action
	if json.Unmarshal(r.Value, &a) != nil || a.Type != "command" {
		return
	}
	thing, _ := a.Params["thing"].(string)
	if thing == "" {
		thing = a.Thing
	}
	id := a.Key
	if id == "" {
		id = string(r.Key)
	}
	c := CommandRef{ID: id, Rule: a.Rule, FiredAt: a.FiredAt}
	if d.commands.add(thing, c) {
		d.hub.thing(thing, "command", c)
	}
}

// commandLog keeps the recent commands of each thing.
type commandLog struct {
	mu sync.Mutex
	m  map[string][]CommandRef
}

// add keeps c for thing; false when it is a repeat of one kept.
func (l *commandLog) add(thing string, c CommandRef) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string][]CommandRef{}
	}
	cs, ok := l.m[thing]
	for _, old := range cs {
		if old.ID == c.ID {
			return false
		}
	}
	if !ok && len(l.m) >= commandThings {
		for k := range l.m { // forget some thing's, any
			delete(l.m, k)
			break
		}
	}
	cs = append(cs, c)
	if len(cs) > commandsKeep {
		cs = cs[len(cs)-commandsKeep:]
	}
	l.m[thing] = cs
	return true
}

// of returns thing's recent commands, newest first.
func (l *commandLog) of(thing string) []CommandRef {
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := l.m[thing]
	out := make([]CommandRef, len(cs))
	for i, c := range cs {
		out[len(cs)-1-i] = c
	}
	return out
}

// DeadLetter is a record of the dead-letter topic.
type DeadLetter struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Time      int64  `json:"time"` // Unix ms
	Stage     string `json:"stage"`
	Reason    string `json:"reason"`
	Source    string `json:"source,omitempty"`
	Key       string `json:"key,omitempty"`
	Value     string `json:"value,omitempty"`
	// Headers are the record's other headers (dlq.rule, dlq.kind,
	// iot.topic, ...).
	Headers map[string]string `json:"headers,omitempty"`
}

// dlqRing keeps the newest dead letters.
type dlqRing struct {
	mu   sync.Mutex
	recs []DeadLetter
}

func (q *dlqRing) add(r *kgo.Record) {
	dl := DeadLetter{Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp.UnixMilli(), Key: shown(r.Key), Value: shown(r.Value)}
	for _, h := range r.Headers {
		switch h.Key {
		case schemas.HeaderDLQStage:
			dl.Stage = string(h.Value)
		case schemas.HeaderDLQReason:
			dl.Reason = shown(h.Value)
		case schemas.HeaderDLQSource:
			dl.Source = string(h.Value)
		default:
			if dl.Headers == nil {
				dl.Headers = map[string]string{}
			}
			dl.Headers[h.Key] = shown(h.Value)
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.recs = append(q.recs, dl)
	if len(q.recs) > 2*dlqKeep {
		q.recs = append(q.recs[:0], q.recs[len(q.recs)-dlqKeep:]...)
	}
}

// newest returns the newest n dead letters, newest first.
func (q *dlqRing) newest(n int) []DeadLetter {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, len(q.recs))
	out := make([]DeadLetter, n)
	for i := range n {
		out[i] = q.recs[len(q.recs)-1-i]
	}
	return out
}
