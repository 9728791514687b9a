package processors

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// failing fails every event and every tick.
type failing struct{}

func (failing) Name() string { return "failing" }
func (failing) Process(context.Context, *Tx, *Event) error {
	return errors.New("cannot process")
}
func (failing) Tick(context.Context, *Tx, time.Time) error { return errors.New("cannot tick") }

// Failures of events and ticks reach the DLQ in one shape: the
// dlq.stage, dlq.reason and dlq.source headers.
func TestDLQShape(t *testing.T) {
	ctx := context.Background()
	h, err := NewHarness(failing{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	out, err := h.Publish(ctx, "thing", schemas.Envelope{Topic: "a/b"}, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	ticks, err := h.Tick(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		recs   []*kgo.Record
		reason string
		source string
	}{
		{out, "cannot process", schemas.DefaultTopics().Events + "/0/0"},
		{ticks, "cannot tick", "tick/0"},
	}
	for _, tt := range tests {
		if len(tt.recs) != 1 || tt.recs[0].Topic != schemas.DefaultTopics().DLQ {
			t.Fatalf("want one DLQ record, got %v", tt.recs)
		}
		h := tt.recs[0].Headers
		if got := string(schemas.HeaderValue(h, "dlq.stage")); got != "failing" {
			t.Errorf("dlq.stage = %q", got)
		}
		if got := string(schemas.HeaderValue(h, "dlq.reason")); got != tt.reason {
			t.Errorf("dlq.reason = %q, want %q", got, tt.reason)
		}
		if got := string(schemas.HeaderValue(h, "dlq.source")); got != tt.source {
			t.Errorf("dlq.source = %q, want %q", got, tt.source)
		}
	}
}

// Source reads back the partition and offset Tx.Emit records in iot.src.
func TestSource(t *testing.T) {
	h, err := NewHarness(memoProbe{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rec := probeRecord("a", 42, "x")
	rec.Partition = 3
	out, err := h.Record(context.Background(), rec)
	if err != nil || len(out) != 1 {
		t.Fatalf("%d records, %v", len(out), err)
	}
	tests := []struct {
		name      string
		rec       *kgo.Record
		partition int32
		offset    int64
		ok        bool
	}{
		{"emitted", out[0], 3, 42, true},
		{"no header", &kgo.Record{}, 0, 0, false},
		{"not ours", &kgo.Record{Headers: []kgo.RecordHeader{{Key: schemas.HeaderSource, Value: []byte("x/y")}}}, 0, 0, false},
	}
	for _, tt := range tests {
		p, o, ok := Source(tt.rec)
		if ok != tt.ok || (ok && (p != tt.partition || o != tt.offset)) {
			t.Errorf("%s: %d, %d, %t; want %d, %d, %t", tt.name, p, o, ok, tt.partition, tt.offset, tt.ok)
		}
	}
}
