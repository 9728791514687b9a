package shadow_test

import (
	"context"
	"maps"
	"strings"
	"testing"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// shadowDocs keeps the shadow documents of a state snapshot (keys
// "shadow\x00thing[/name]"), leaving out the runtime's keys and the
// processor's own NUL-prefixed bookkeeping (rate counts, restore marks).
func shadowDocs(snap map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range snap {
		if rest, ok := strings.CutPrefix(k, shadow.Name+"\x00"); ok && !strings.HasPrefix(rest, "\x00") {
			out[rest] = v
		}
	}
	return out
}

// A partition restored from the shadows changelog, then applied from
// wherever the events topic now starts (retention removed what came
// before), ends with the same shadow documents as the partition that
// saw every event: the restored documents are kept, the events they
// already reflect are skipped (versions are not bumped twice), and no
// shadow is lost with the events retention removed.
func TestRestoreFromChangelog(t *testing.T) {
	log := randomLog(11, 3000)
	out, snap := run(t, shadow.Options{RateLimit: 3}, log)
	want := shadowDocs(snap)
	if len(want) < 10 {
		t.Fatalf("only %d shadows: the log exercised too little", len(want))
	}
	var changelog []*kgo.Record
	for _, r := range out {
		if r.Topic == schemas.DefaultTopics().Shadows {
			changelog = append(changelog, r)
		}
	}
	read := func(_ context.Context, topic string, fn func(*kgo.Record) error) error {
		if topic != schemas.DefaultTopics().Shadows {
			t.Fatalf("restore read %s", topic)
		}
		for _, r := range changelog {
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	}
	for _, kept := range []int{len(log), 2000, 500, 1, 0} {
		h, err := processors.NewHarness(shadow.New(shadow.Options{RateLimit: 3}))
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := h.Restore(ctx, 0, read); err != nil {
			t.Fatal(err)
		}
		for _, r := range log[len(log)-kept:] {
			if _, err := h.Record(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		// One more request, past every offset the restore covers: the
		// restore's bookkeeping goes, and the state is what the events
		// give, key for key.
		env := schemas.Envelope{Type: schemas.EventPublish, Topic: "$aws/things/thing-0/shadow/get", ClientID: "thing-0", ReceivedAt: 1}
		if _, err := h.Record(ctx, &kgo.Record{Key: []byte("thing-0"), Headers: env.Headers(), Offset: int64(len(log))}); err != nil {
			t.Fatal(err)
		}
		snap, err := h.Snapshot(0)
		if err != nil {
			t.Fatal(err)
		}
		for k := range snap {
			if strings.Contains(k, "restored") {
				t.Fatalf("%d events kept: restore key %q left", kept, k)
			}
		}
		if got := shadowDocs(snap); !maps.Equal(got, want) {
			for k, v := range want {
				if got[k] != v {
					t.Fatalf("%d events kept: shadow %q is\n%s\nwant\n%s", kept, k, got[k], v)
				}
			}
			t.Fatalf("%d events kept: %d shadows, want %d", kept, len(got), len(want))
		}
		h.Close()
	}
}

// Without a restore nothing is skipped: a partition rebuilt from the
// whole log without its changelog equals the original (the skip check
// only acts on restored shadows).
func TestNoRestoreSkipsNothing(t *testing.T) {
	log := randomLog(12, 1500)
	_, a := run(t, shadow.Options{}, log)
	_, b := runBatched(t, shadow.Options{}, log, 100)
	if !maps.Equal(shadowDocs(a), shadowDocs(b)) {
		t.Fatal("rebuild without restore differs")
	}
}
