package timer

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// offline is the "offline for 15 minutes" alert as a processor: the
// condition is "the last presence event was a disconnect", observed on
// connected/disconnected events, fired from the runtime's tick.
type offline struct {
	cfg Config
	tm  *Timers
}

func (p *offline) Name() string { return "offline" }

func (p *offline) Process(_ context.Context, tx *processors.Tx, ev *processors.Event) error {
	t := ev.Envelope.Type
	if t != schemas.EventConnected && t != schemas.EventDisconnected {
		return nil
	}
	evs, err := p.tm.Observe(tx, ev.Thing, t == schemas.EventDisconnected, ev.ReceivedAt())
	if err != nil {
		return err
	}
	p.emit(tx, evs)
	return nil
}

func (p *offline) Tick(_ context.Context, tx *processors.Tx, now time.Time) error {
	evs, err := p.tm.Fire(tx, now)
	if err != nil {
		return err
	}
	p.emit(tx, evs)
	return nil
}

func (p *offline) emit(tx *processors.Tx, evs []Event) {
	for _, e := range evs {
		v := fmt.Sprintf("%s since %s at %s", e.Kind, e.Since.Format("15:04"), e.At.Format("15:04"))
		tx.Emit(&kgo.Record{Topic: "alerts", Key: []byte(e.Key), Value: []byte(v)})
	}
}

// TestOfflineFor15Minutes drives the alert through the processor runtime's
// harness (real *processors.Tx over Pebble, the harness clock as the fake
// clock) and restarts the processor's memory in the middle.
func TestOfflineFor15Minutes(t *testing.T) {
	cfg := Config{For: 15 * time.Minute, Resolve: true}
	p := &offline{cfg: cfg, tm: newTimers(t, cfg)}
	h, err := processors.NewHarness(p)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	h.Now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	presence := func(thing string, typ schemas.EventType) []string {
		t.Helper()
		recs, err := h.Publish(ctx, thing, schemas.Envelope{Type: typ, ClientID: thing}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return alerts(t, recs)
	}
	tick := func() []string {
		t.Helper()
		recs, err := h.Tick(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		return alerts(t, recs)
	}
	at := func(hhmm string) {
		t.Helper()
		tm, err := time.Parse("15:04", hhmm)
		if err != nil {
			t.Fatal(err)
		}
		h.Now = time.Date(2026, 3, 1, tm.Hour(), tm.Minute(), 0, 0, time.UTC)
	}
	steps := []struct {
		at      string
		do      func() []string
		restart bool
		want    []string
	}{
		{at: "12:00", do: func() []string { return presence("dev-1", schemas.EventConnected) }},
		{at: "12:00", do: func() []string { return presence("dev-2", schemas.EventConnected) }},
		{at: "12:01", do: func() []string { return presence("dev-1", schemas.EventDisconnected) }},
		{at: "12:02", do: func() []string { return presence("dev-2", schemas.EventDisconnected) }},
		{at: "12:03", do: func() []string { return presence("dev-1", schemas.EventPublish) }},   // not presence
		{at: "12:05", do: func() []string { return presence("dev-2", schemas.EventConnected) }}, // back after 3 min
		{at: "12:10", do: tick},
		{at: "12:15", do: tick, restart: true},
		{at: "12:16", do: tick, want: []string{"dev-1: fired since 12:01 at 12:16"}},
		{at: "12:17", do: tick, restart: true},
		{at: "12:40", do: tick},
		{at: "12:41", do: func() []string { return presence("dev-1", schemas.EventConnected) }, want: []string{"dev-1: resolved since 12:01 at 12:41"}},
		{at: "13:30", do: tick},
	}
	for i, s := range steps {
		at(s.at)
		if s.restart {
			p.tm = newTimers(t, cfg) // the process restarted: only the Pebble state survives
		}
		if got := s.do(); !reflect.DeepEqual(got, s.want) {
			t.Fatalf("step %d at %s: alerts %q, want %q", i, s.at, got, s.want)
		}
	}
}

// alerts renders the alert records, failing on anything else (a DLQ
// record means the processor failed).
func alerts(t *testing.T, recs []*kgo.Record) []string {
	t.Helper()
	var out []string
	for _, r := range recs {
		if r.Topic != "alerts" {
			t.Fatalf("unexpected record on %s: %s", r.Topic, r.Value)
		}
		out = append(out, string(r.Key)+": "+string(r.Value))
	}
	return out
}
