package lastseen

import (
	"context"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas"
)

func TestCountsAndPresence(t *testing.T) {
	ctx := context.Background()
	h, err := processors.NewHarness(Processor{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	steps := []struct {
		typ       schemas.EventType
		thing     string
		messages  int64
		connected bool
	}{
		{schemas.EventConnected, "a", 0, true},
		{schemas.EventPublish, "a", 1, true},
		{schemas.EventPublish, "b", 1, false},
		{schemas.EventPublish, "a", 2, true},
		{schemas.EventDisconnected, "a", 2, false},
	}
	for i, s := range steps {
		h.Now = h.Now.Add(time.Second)
		if _, err := h.Publish(ctx, s.thing, schemas.Envelope{Type: s.typ, Topic: "t/" + s.thing}, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		got, ok, err := Get(h, s.thing)
		if err != nil || !ok {
			t.Fatalf("step %d: %v %v", i, ok, err)
		}
		if got.Messages != s.messages || got.Connected != s.connected || !got.LastSeen.Equal(h.Now) {
			t.Fatalf("step %d: %+v", i, got)
		}
	}
}
