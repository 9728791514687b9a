package processors

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
)

// clockProbe emits the clock it sees for every event and every tick.
type clockProbe struct{}

func (clockProbe) Name() string { return "clock" }
func (clockProbe) Process(_ context.Context, tx *Tx, ev *Event) error {
	tx.Emit(&kgo.Record{Topic: "clock", Value: fmt.Appendf(nil, "%s %d", ev.Thing, tx.Now().UnixMilli())})
	return nil
}
func (clockProbe) Tick(_ context.Context, tx *Tx, now time.Time) error {
	tx.Emit(&kgo.Record{Topic: "clock", Value: fmt.Appendf(nil, "tick %d %d", now.UnixMilli(), tx.Now().UnixMilli())})
	return nil
}

// Partitions run concurrently with RecordsAt and TickAt (as replay runs
// them) give each partition the outputs, clock and state that running
// them one after another with Records, Tick and Harness.Now gives, with
// a batch per call or batches kept open over calls (BatchEvents).
func TestHarnessPartitionsConcurrently(t *testing.T) {
	const partitions, batches, perBatch = 4, 40, 25
	ctx := context.Background()
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	batch := func(p int32, b int) (time.Time, []*kgo.Record) {
		recs := make([]*kgo.Record, perBatch)
		for i := range recs {
			off := int64(b*perBatch + i)
			recs[i] = countRecord(fmt.Sprintf("t%d-%d", p, off%7), off, "ok")
			recs[i].Partition = p
		}
		// Each partition's clock differs from the others'.
		return base.Add(time.Duration(b)*time.Second + time.Duration(p)*time.Millisecond), recs
	}
	newHarness := func() *Harness {
		h, err := NewHarness(counter{"c", "out"}, clockProbe{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		return h
	}

	seq := newHarness()
	want := map[int32][]string{}
	for p := range int32(partitions) {
		for b := range batches {
			now, recs := batch(p, b)
			seq.Now = now
			out, err := seq.Records(ctx, recs)
			if err != nil {
				t.Fatal(err)
			}
			want[p] = append(want[p], values(out)...)
			seq.Now = now.Add(500 * time.Millisecond)
			if out, err = seq.Tick(ctx, p); err != nil {
				t.Fatal(err)
			}
			want[p] = append(want[p], values(out)...)
		}
	}

	// Batches of 110 events span four RecordsAt calls and three ticks;
	// with decoded, RecordsAt is given the envelopes decoded.
	for _, tt := range []struct {
		batchEvents int
		decoded     bool
	}{{0, false}, {110, false}, {110, true}} {
		t.Run(fmt.Sprint("BatchEvents ", tt.batchEvents, " decoded ", tt.decoded), func(t *testing.T) {
			par := newHarness()
			par.BatchEvents = tt.batchEvents
			got := map[int32][]string{}
			var mu sync.Mutex
			var wg sync.WaitGroup
			for p := range int32(partitions) {
				wg.Go(func() {
					var vals []string
					for b := range batches {
						now, recs := batch(p, b)
						var envs []*schemas.Envelope
						if tt.decoded {
							envs = decodeAll(t, recs)
						}
						out, err := par.RecordsAt(ctx, now, recs, envs)
						if err != nil {
							t.Error(err)
							return
						}
						vals = append(vals, values(out)...)
						if out, err = par.TickAt(ctx, p, now.Add(500*time.Millisecond)); err != nil {
							t.Error(err)
							return
						}
						vals = append(vals, values(out)...)
					}
					mu.Lock()
					got[p] = vals
					mu.Unlock()
				})
			}
			wg.Wait()
			if err := par.Commit(); err != nil {
				t.Fatal(err)
			}
			for p := range int32(partitions) {
				if i := firstDiff(got[p], want[p]); i >= 0 {
					t.Errorf("partition %d: %d outputs, want %d; output %d: %q, want %q", p, len(got[p]), len(want[p]), i, at(got[p], i), at(want[p], i))
				}
				gs, err := par.Snapshot(p)
				if err != nil {
					t.Fatal(err)
				}
				ws, err := seq.Snapshot(p)
				if err != nil {
					t.Fatal(err)
				}
				if len(ws) < 8 || !maps.Equal(gs, ws) {
					t.Errorf("partition %d: state of %d keys, want %d keys equal", p, len(gs), len(ws))
				}
			}
			if def := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); !par.Now.Equal(def) {
				t.Errorf("RecordsAt moved Harness.Now to %v", par.Now)
			}
		})
	}
}

// decodeAll returns the envelopes of recs.
func decodeAll(t *testing.T, recs []*kgo.Record) []*schemas.Envelope {
	envs := make([]*schemas.Envelope, len(recs))
	for i, r := range recs {
		env, err := schemas.DecodeEnvelope(r.Headers)
		if err != nil {
			t.Fatal(err)
		}
		envs[i] = &env
	}
	return envs
}

// topicProbe emits the MQTT topic of every event it sees.
type topicProbe struct{}

func (topicProbe) Name() string { return "topic" }
func (topicProbe) Process(_ context.Context, tx *Tx, ev *Event) error {
	tx.Emit(&kgo.Record{Topic: "topic", Value: []byte(ev.Envelope.Topic)})
	return nil
}

// RecordsAt given the envelopes runs the processors on them, not on
// what the headers hold, and does not decode the headers: a record whose
// headers hold no envelope is an event then. Without them, it decodes.
func TestRecordsAtTakesDecodedEnvelopes(t *testing.T) {
	ctx := context.Background()
	h, err := NewHarness(topicProbe{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	recs := []*kgo.Record{countRecord("a", 0, "x"), {Topic: schemas.DefaultTopics().Events, Key: []byte("b"), Offset: 1}}
	envs := []*schemas.Envelope{{Type: schemas.EventPublish, Topic: "given/a"}, {Type: schemas.EventPublish, Topic: "given/b"}}
	out, err := h.RecordsAt(ctx, h.Now, recs, envs)
	if err != nil {
		t.Fatal(err)
	}
	if got := values(out); !slices.Equal(got, []string{"given/a", "given/b"}) {
		t.Errorf("with envelopes: outputs %q, want the given topics", got)
	}
	out, err = h.RecordsAt(ctx, h.Now, []*kgo.Record{countRecord("a", 2, "x"), {Topic: schemas.DefaultTopics().Events, Key: []byte("b"), Offset: 3}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || string(out[0].Value) != "t/a" || out[1].Topic != h.DLQ {
		t.Errorf("without envelopes: %d outputs (%q), want t/a and a dead letter", len(out), values(out))
	}
	if _, err := h.RecordsAt(ctx, h.Now, recs, envs[:1]); err == nil {
		t.Error("RecordsAt took 1 envelope for 2 records")
	}
}

// firstDiff returns the first index where a and b differ, -1 if none.
func firstDiff(a, b []string) int {
	for i := range max(len(a), len(b)) {
		if at(a, i) != at(b, i) || i >= min(len(a), len(b)) {
			return i
		}
	}
	return -1
}

func at(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}
