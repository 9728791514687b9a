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
