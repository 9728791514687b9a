package replay

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/iotpipe/iotpipe/schemas"
)

// t0 is the receive time of the first event of a test history.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// ev is one event of a test history: at is its receive time after t0.
type ev struct {
	thing, topic, payload string
	at                    time.Duration
	typ                   schemas.EventType
}

// history is a test log: the embedded log with the events produced as
// ingest produces them (keyed by thing, default partitioner, the record
// timestamped just after the receive time).
type history struct {
	t   testing.TB
	l   *eventlog.Log
	log Log
}

func newHistory(t testing.TB, partitions int32) *history {
	l := logtest.Open(t, partitions)
	return &history{t: t, l: l, log: Log{Client: l.Client, Topic: l.Topics().Events}}
}

func (h *history) produce(evs ...ev) {
	h.t.Helper()
	cl, err := h.l.Client(kgo.ProducerLinger(0))
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	recs := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		typ := e.typ
		if typ == "" {
			typ = schemas.EventPublish
		}
		rx := t0.Add(e.at)
		env := schemas.Envelope{Type: typ, Topic: e.topic, ClientID: e.thing, Principal: "anonymous", QoS: 1, ReceivedAt: rx.UnixNano()}
		recs[i] = &kgo.Record{Topic: h.log.Topic, Key: []byte(e.thing), Value: []byte(e.payload), Headers: env.Headers(),
			Timestamp: rx.Add(300 * time.Microsecond)}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

// read returns the events sel selects, in the order Read passes them,
// and how many records it read.
func (h *history) read(sel Selection) ([]*Event, int64) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plan, err := PlanRead(ctx, h.log, sel)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*Event
	var n Counter
	if err := Read(ctx, h.log, sel, plan, &n, func(e *Event) error { out = append(out, e); return nil }); err != nil {
		h.t.Fatal(err)
	}
	return out, n.Load()
}

// each reads sel and passes every event to add, then calls done.
func (h *history) each(sel Selection, add func(context.Context, *Event) error, done func(context.Context) error) Plan {
	h.t.Helper()
	ctx := context.Background()
	plan, err := PlanRead(ctx, h.log, sel)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := Read(ctx, h.log, sel, plan, nil, func(e *Event) error { return add(ctx, e) }); err != nil {
		h.t.Fatal(err)
	}
	if err := done(ctx); err != nil {
		h.t.Fatal(err)
	}
	return plan
}

func removeAll(dir string) error { return os.RemoveAll(dir) }

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// deleteRecords deletes the records of partition p of topic before
// offset (as retention would).
func deleteRecords(cl *kgo.Client, topic string, p int32, offset int64) error {
	offs := kadm.Offsets{}
	offs.Add(kadm.Offset{Topic: topic, Partition: p, At: offset})
	resp, err := kadm.NewClient(cl).DeleteRecords(context.Background(), offs)
	if err == nil {
		err = resp.Error()
	}
	return err
}
