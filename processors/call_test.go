package processors

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// counter counts each thing's events in its state and emits
// "<thing>:<count>" for each to topic. A payload "fail:<name>" makes the
// processor with that name write and emit, then fail; "fatal:<name>"
// makes it fail with ErrFatal.
type counter struct {
	name  string
	topic string
}

func (c counter) Name() string { return c.name }

func (c counter) Process(_ context.Context, tx *Tx, ev *Event) error {
	n, err := c.count(tx, ev.Thing)
	if err != nil {
		return err
	}
	n++
	if err := tx.Set([]byte(ev.Thing), binary.BigEndian.AppendUint64(nil, uint64(n))); err != nil {
		return err
	}
	tx.Emit(&kgo.Record{Topic: c.topic, Key: []byte(ev.Thing), Value: fmt.Appendf(nil, "%s:%d", ev.Thing, n)})
	switch string(ev.Payload) {
	case "fail:" + c.name:
		return errors.New("cannot count this one")
	case "fatal:" + c.name:
		return Fatal(errors.New("broken"))
	}
	return nil
}

func (c counter) count(tx *Tx, thing string) (uint64, error) {
	b, ok, err := tx.Get([]byte(thing))
	if err != nil || !ok {
		return 0, err
	}
	return binary.BigEndian.Uint64(b), nil
}

func countRecord(thing string, offset int64, payload string) *kgo.Record {
	env := schemas.Envelope{Type: schemas.EventPublish, Topic: "t/" + thing}
	return &kgo.Record{Topic: schemas.DefaultTopics().Events, Key: []byte(thing), Value: []byte(payload), Headers: env.Headers(), Offset: offset}
}

// A call that fails leaves nothing: its writes and what it emitted are
// dropped, the event goes to the DLQ, the next processor still runs on
// the event, and the next event sees the state as it was before.
func TestFailedCallLeavesNothing(t *testing.T) {
	ctx := context.Background()
	h, err := NewHarness(counter{"c1", "out"}, counter{"c2", "out"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var got []string
	for i, payload := range []string{"ok", "fail:c1", "ok"} {
		out, err := h.Record(ctx, countRecord("a", int64(i), payload))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range out {
			if r.Topic == "out" {
				got = append(got, string(r.Value))
			} else {
				got = append(got, r.Topic+":"+string(schemas.HeaderValue(r.Headers, "dlq.stage")))
			}
		}
	}
	want := "[a:1 a:1 iotpipe.dlq:c1 a:2 a:2 a:3]"
	if fmt.Sprint(got) != want {
		t.Fatalf("emitted %v, want %s (c1 counts 1, fails, 2; c2 counts every event)", got, want)
	}
}

// An ErrFatal failure aborts the whole batch: nothing of it commits, not
// even the events before it, and the offset does not move.
func TestFatalFailureAbortsTheBatch(t *testing.T) {
	ctx := context.Background()
	h, err := NewHarness(counter{"c1", "out"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if _, err := h.Records(ctx, []*kgo.Record{countRecord("a", 0, "ok")}); err != nil {
		t.Fatal(err)
	}
	before, err := h.Snapshot(0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Records(ctx, []*kgo.Record{countRecord("a", 1, "ok"), countRecord("b", 2, "ok"), countRecord("a", 3, "fatal:c1")})
	if !errors.Is(err, ErrFatal) {
		t.Fatalf("batch with a fatal failure: %v, want ErrFatal", err)
	}
	after, err := h.Snapshot(0)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(before, after) {
		t.Fatalf("an aborted batch changed the state:\n%v\n%v", before, after)
	}
}

// scanner checks, inside one call, that the call's own writes and
// deletes are visible to Get and Scan, merged with the state in key
// order.
type scanner struct{ t *testing.T }

func (scanner) Name() string { return "scan" }
func (s scanner) Process(_ context.Context, tx *Tx, ev *Event) error {
	if string(ev.Payload) == "seed" {
		for _, k := range []string{"b", "d", "f"} {
			if err := tx.Set([]byte(k), []byte("stored-"+k)); err != nil {
				return err
			}
		}
		return nil
	}
	_ = tx.Set([]byte("a"), []byte("new-a"))
	_ = tx.Set([]byte("d"), []byte("new-d"))
	_ = tx.Delete([]byte("f"))
	_ = tx.Set([]byte("g"), []byte("x"))
	_ = tx.Set([]byte("g"), []byte("new-g")) // overwritten in the call
	_ = tx.Set([]byte("e"), []byte("gone"))
	_ = tx.Delete([]byte("e"))
	tests := []struct{ key, want string }{
		{"a", "new-a"}, {"b", "stored-b"}, {"d", "new-d"}, {"e", ""}, {"f", ""}, {"g", "new-g"},
	}
	for _, tt := range tests {
		v, ok, err := tx.Get([]byte(tt.key))
		if err != nil || string(v) != tt.want || ok != (tt.want != "") {
			s.t.Errorf("Get(%s) = %q, %t, %v; want %q", tt.key, v, ok, err, tt.want)
		}
	}
	var seen []string
	if err := tx.Scan(nil, nil, func(k, v []byte) bool {
		seen = append(seen, string(k)+"="+string(v))
		return true
	}); err != nil {
		return err
	}
	if got, want := strings.Join(seen, " "), "a=new-a b=stored-b d=new-d g=new-g"; got != want {
		s.t.Errorf("Scan = %s, want %s", got, want)
	}
	seen = seen[:0]
	_ = tx.Scan([]byte("b"), []byte("e"), func(k, v []byte) bool {
		seen = append(seen, string(k))
		return len(seen) < 1
	})
	if got := strings.Join(seen, " "); got != "b" {
		s.t.Errorf("Scan [b, e) stopped after one = %s, want b", got)
	}
	return nil
}

func TestCallSeesItsOwnWrites(t *testing.T) {
	ctx := context.Background()
	h, err := NewHarness(scanner{t})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for i, p := range []string{"seed", "check"} {
		if _, err := h.Record(ctx, countRecord("x", int64(i), p)); err != nil {
			t.Fatal(err)
		}
	}
	snap, err := h.Snapshot(0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"scan\x00a": "new-a", "scan\x00b": "stored-b", "scan\x00d": "new-d", "scan\x00g": "new-g"}
	for k, v := range want {
		if snap[k] != v {
			t.Errorf("state %q = %q, want %q", k, snap[k], v)
		}
	}
	if _, ok := snap["scan\x00f"]; ok {
		t.Error("deleted key f is still in the state")
	}
}

// reader reads, through Lookup, what counter "c1" wrote for the same
// event (it runs after it) and emits it.
type reader struct{}

func (reader) Name() string { return "reader" }
func (reader) Process(_ context.Context, tx *Tx, ev *Event) error {
	b, ok, err := tx.Lookup("c1", []byte(ev.Thing))
	if err != nil {
		return err
	}
	v := "none"
	if ok {
		v = fmt.Sprint(binary.BigEndian.Uint64(b))
	}
	tx.Emit(&kgo.Record{Topic: "seen", Value: []byte(v)})
	return nil
}

// Lookup reads another processor's state in the same batch, including
// its writes for the same event and for earlier events not yet
// committed.
func TestLookupReadsThroughTheBatch(t *testing.T) {
	h, err := NewHarness(counter{"c1", "out"}, reader{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	out, err := h.Records(context.Background(), []*kgo.Record{countRecord("a", 0, "ok"), countRecord("a", 1, "ok"), countRecord("b", 2, "ok")})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for _, r := range out {
		if r.Topic == "seen" {
			seen = append(seen, string(r.Value))
		}
	}
	if got := fmt.Sprint(seen); got != "[1 2 1]" {
		t.Fatalf("reader saw %s, want [1 2 1]", got)
	}
}

// timed emits, on every tick, the output of a timer due at a fixed
// deadline.
type timed struct{}

func (timed) Name() string                               { return "timed" }
func (timed) Process(context.Context, *Tx, *Event) error { return nil }
func (timed) Tick(_ context.Context, tx *Tx, now time.Time) error {
	tx.At(time.UnixMilli(1_700_000_000_000), "timer a")
	tx.Emit(&kgo.Record{Topic: "out", Value: []byte("due")})
	tx.Emit(&kgo.Record{Topic: "out", Value: []byte("due too")})
	tx.At(time.UnixMilli(1_700_000_000_000), "timer b") // due at the same time
	tx.Emit(&kgo.Record{Topic: "out", Value: []byte("due b")})
	return nil
}

// The ids of a timer's outputs come from its deadline, what it is for
// and the processor's name, not from when the tick ran: a tick run again
// later gives the same ids, and two timers due at the same time get
// different ones. Event outputs carry partition, offset and name.
func TestOutputIDs(t *testing.T) {
	ctx := context.Background()
	h, err := NewHarness(timed{}, counter{"c1", "out"})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var ids []string
	for _, now := range []time.Time{h.Now, h.Now.Add(time.Hour)} {
		h.Now = now
		out, err := h.Tick(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range out {
			ids = append(ids, string(schemas.HeaderValue(r.Headers, schemas.HeaderSource)))
		}
	}
	rec := countRecord("a", 41, "ok")
	rec.Partition = 3
	out, err := h.Record(ctx, rec)
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, string(schemas.HeaderValue(out[0].Headers, schemas.HeaderSource)))
	a, b := "3/t1700000000000."+hash36("timer a")+"/timed/", "3/t1700000000000."+hash36("timer b")+"/timed/"
	want := fmt.Sprint([]string{a + "0", a + "1", b + "0", a + "0", a + "1", b + "0", "3/41/c1/0"})
	if got := fmt.Sprint(ids); got != want {
		t.Fatalf("ids %s\nwant %s", got, want)
	}
}

func hash36(s string) string {
	h := fnv.New64a()
	h.Write([]byte(s))
	return strconv.FormatUint(h.Sum64(), 36)
}

// The changelog holds the partition's state: restored into an empty
// store at any point, it gives the state key for key, and applying the
// rest of the events on top gives what applying them all gives.
func TestChangelogRestoresTheState(t *testing.T) {
	ctx := context.Background()
	var log []*kgo.Record
	for i := range 300 {
		p := "ok"
		if i%37 == 5 {
			p = "fail:c1"
		}
		log = append(log, countRecord(fmt.Sprintf("t%d", i%7), int64(i), p))
	}
	full, err := NewHarness(counter{"c1", "out"}, counter{"c2", "out2"})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	for i := 0; i < len(log); i += 50 {
		if _, err := full.Records(ctx, log[i:min(i+50, len(log))]); err != nil {
			t.Fatal(err)
		}
	}
	want, err := full.Snapshot(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{0, 50, 150, 300} {
		a, err := NewHarness(counter{"c1", "out"}, counter{"c2", "out2"})
		if err != nil {
			t.Fatal(err)
		}
		if cut > 0 {
			if _, err := a.Records(ctx, log[:cut]); err != nil {
				t.Fatal(err)
			}
		}
		b, err := NewHarness(counter{"c1", "out"}, counter{"c2", "out2"})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Restore(0, a.Changelog(0)); err != nil {
			t.Fatal(err)
		}
		sa, _ := a.Snapshot(0)
		sb, _ := b.Snapshot(0)
		if !maps.Equal(sa, sb) {
			t.Fatalf("cut %d: restored state differs from the state it was written from", cut)
		}
		if cut < len(log) {
			if _, err := b.Records(ctx, log[cut:]); err != nil {
				t.Fatal(err)
			}
		}
		got, _ := b.Snapshot(0)
		if !maps.Equal(got, want) {
			t.Fatalf("cut %d: restored then applied differs from applied from the start", cut)
		}
		a.Close()
		b.Close()
	}
}
