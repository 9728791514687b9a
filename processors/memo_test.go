package processors

import (
	"context"
	"fmt"
	"testing"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// memoProbe reports, for each event, what its memo held for the event's
// thing (the offset of the thing's previous event, or "miss"), then
// memoizes the event's offset. An event with payload "abort" fails with
// the context's error, which abandons the batch.
type memoProbe struct{}

func (memoProbe) Name() string { return "probe" }
func (memoProbe) Process(ctx context.Context, tx *Tx, ev *Event) error {
	if string(ev.Payload) == "abort" {
		return ctx.Err()
	}
	got := "miss"
	if v, ok := tx.Memo().Get([]byte(ev.Thing)); ok {
		got = fmt.Sprint(v)
	}
	tx.Memo().Put([]byte(ev.Thing), ev.Offset)
	tx.Emit(&kgo.Record{Topic: "probe", Value: []byte(got)})
	return nil
}

func probeRecord(thing string, offset int64, payload string) *kgo.Record {
	env := schemas.Envelope{Type: schemas.EventPublish, Topic: "t"}
	return &kgo.Record{Key: []byte(thing), Value: []byte(payload), Headers: env.Headers(), Offset: offset}
}

func values(recs []*kgo.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Value))
	}
	return out
}

// A memo keeps what a committed batch put in it, and loses everything
// when a batch is abandoned (its state writes are dropped too).
func TestMemoEmptiedWhenBatchAborts(t *testing.T) {
	h, err := NewHarness(memoProbe{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	out, err := h.Records(ctx, []*kgo.Record{probeRecord("a", 0, "x"), probeRecord("a", 1, "x"), probeRecord("b", 2, "x")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(values(out)), "[miss 0 miss]"; got != want {
		t.Fatalf("first batch saw %s, want %s", got, want)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.Records(canceled, []*kgo.Record{probeRecord("c", 3, "x"), probeRecord("c", 4, "abort")}); err == nil {
		t.Fatal("a batch whose processor failed with the context's error committed")
	}
	out, err = h.Records(ctx, []*kgo.Record{probeRecord("a", 3, "x"), probeRecord("c", 4, "x")})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(values(out)), "[miss miss]"; got != want {
		t.Fatalf("after the aborted batch saw %s, want %s (memo not emptied)", got, want)
	}
}

// A full memo drops one entry per new one and keeps its size.
func TestMemoBounded(t *testing.T) {
	m := newMemo(3)
	for i := range 10 {
		m.Put(fmt.Appendf(nil, "k%d", i), i)
	}
	if m.Len() != 3 {
		t.Fatalf("len %d, want 3", m.Len())
	}
	if v, ok := m.Get([]byte("k9")); !ok || v != 9 {
		t.Fatalf("the newest entry is %v, %v", v, ok)
	}
	m.Put([]byte("k9"), 90)
	if v, _ := m.Get([]byte("k9")); v != 90 || m.Len() != 3 {
		t.Fatalf("replace: %v, len %d", v, m.Len())
	}
	m.Delete([]byte("k9"))
	if _, ok := m.Get([]byte("k9")); ok {
		t.Fatal("deleted entry still there")
	}
}
