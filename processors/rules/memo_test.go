package rules

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas"
)

// aborter fails fatally on an event whose payload is "abort", which
// abandons the whole batch (the rules' writes and memo included).
type aborter struct{}

func (aborter) Name() string { return "aborter" }
func (aborter) Process(_ context.Context, _ *processors.Tx, ev *processors.Event) error {
	if string(ev.Payload) == "abort" {
		return processors.Fatal(errors.New("abort the batch"))
	}
	return nil
}

// memoRules are rules of every kind whose state the processor keeps in
// memory: pewma, windows (one with a percentile, one keyed by two
// expressions), FOR with and without RESOLVE.
const memoRules = typicalRules + `
CREATE RULE p95 AS SELECT percentile(temp, 95) AS p, min(hum) AS lo FROM 'sensors/+/data' GROUP BY TUMBLE(INTERVAL 1 MINUTE);
CREATE RULE by_kind AS SELECT sum(battery) AS b FROM 'sensors/+/data' GROUP BY HOP(INTERVAL 2 MINUTES, INTERVAL 1 MINUTE), topic(2), ok;
CREATE RULE warm AS SELECT temp FROM 'sensors/+/data' WHERE temp > 24 FOR 10 SECONDS RESOLVE THEN kafka(topic => 'warm');
`

// memoEvents is a run of device traffic over 5 minutes (with spikes,
// warm spells and a device missing its temperature) as batches of
// records, with a tick after each batch.
func memoEvents(now time.Time) [][]*kgo.Record {
	var batches [][]*kgo.Record
	off := int64(0)
	for b := range 60 {
		var recs []*kgo.Record
		for j := range 25 {
			i := b*25 + j
			thing := fmt.Sprintf("dev-%d", i%7)
			env := schemas.Envelope{Type: schemas.EventPublish, QoS: 1, Topic: "sensors/" + thing + "/data", ClientID: thing,
				ReceivedAt: now.Add(time.Duration(i) * 200 * time.Millisecond).UnixNano()}
			temp := 20 + float64(i%7)/2
			if i%97 == 50 {
				temp = 80 // a spike
			}
			if (i/300)%2 == 1 {
				temp += 6 // a warm spell of a minute
			}
			v := fmt.Appendf(nil, `{"temp": %g, "hum": %d, "battery": 2.%d, "ok": %t}`, temp, 40+i%11, i%9, i%5 == 0)
			if i%13 == 0 {
				v = fmt.Appendf(nil, `{"hum": %d, "battery": 3}`, 40+i%11)
			}
			recs = append(recs, &kgo.Record{Key: []byte(thing), Value: v, Headers: env.Headers(), Offset: off})
			off++
		}
		batches = append(batches, recs)
	}
	return batches
}

// memoRun runs the events through the rules (and the aborter) and
// returns what they emitted and the state. Before a batch, restart
// says whether to drop everything held in memory, and abortAt where to
// insert an "abort" record into the batch first (-1: nowhere); an
// aborted batch is run again without it, as the runtime does.
func memoRun(t *testing.T, restart func(b int) bool, abortAt func(b int) int) ([]string, map[string]string) {
	t.Helper()
	set := compileSet(t, memoRules)
	newProc := func() *Processor {
		p := New(Options{})
		p.SetRules(set)
		return p
	}
	r := &restartable{p: newProc()}
	h, err := processors.NewHarness(r, aborter{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	t0 := h.Now
	ctx := context.Background()
	var out []string
	keep := func(recs []*kgo.Record) {
		for _, rec := range recs {
			out = append(out, fmt.Sprintf("%s %s %s %s", rec.Topic, rec.Key, rec.Value, schemas.HeaderValue(rec.Headers, schemas.HeaderSource)))
		}
	}
	for b, recs := range memoEvents(t0) {
		if restart(b) {
			r.p = newProc()
			h.Restart()
		}
		if at := abortAt(b); at >= 0 {
			env := schemas.Envelope{Type: schemas.EventPublish, Topic: "sensors/x/data", ReceivedAt: t0.UnixNano()}
			bad := slices.Insert(slices.Clone(recs), at, &kgo.Record{Key: []byte("x"), Value: []byte("abort"), Headers: env.Headers(), Offset: recs[at].Offset})
			if _, err := h.Records(ctx, bad); err == nil {
				t.Fatalf("batch %d did not abort", b)
			}
		}
		got, err := h.Records(ctx, recs)
		if err != nil {
			t.Fatal(err)
		}
		keep(got)
		h.Now = t0.Add(time.Duration(b+1) * 5 * time.Second)
		ticked, err := h.Tick(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		keep(ticked)
	}
	snap, err := h.Snapshot(0)
	if err != nil {
		t.Fatal(err)
	}
	return out, snap
}

// What the rules keep in memory mirrors their state: a run that drops
// it before every batch (as a restart does), and a run whose batches
// abort half way and run again, emit the same records and leave the
// same state, byte for byte, as a run that keeps it throughout.
func TestMemoMirrorsState(t *testing.T) {
	never := func(int) bool { return false }
	noAbort := func(int) int { return -1 }
	want, wantState := memoRun(t, never, noAbort)
	kinds := map[string]int{}
	for _, o := range want {
		kinds[o[:len("iotpipe.a")]]++
	}
	if len(want) < 100 || kinds["iotpipe.a"] == 0 {
		t.Fatalf("the run did not exercise the rules: %d records", len(want))
	}
	tests := []struct {
		name    string
		restart func(int) bool
		abortAt func(int) int
	}{
		{"restart before every batch", func(int) bool { return true }, noAbort},
		{"restart every 7th batch", func(b int) bool { return b%7 == 3 }, noAbort},
		{"every 3rd batch aborts half way", never, func(b int) int {
			if b%3 == 1 {
				return 12
			}
			return -1
		}},
		{"every batch aborts at its last event", never, func(int) int { return 24 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, state := memoRun(t, tt.restart, tt.abortAt)
			if !slices.Equal(got, want) {
				for i := range min(len(got), len(want)) {
					if got[i] != want[i] {
						t.Fatalf("record %d differs:\n got %s\nwant %s", i, got[i], want[i])
					}
				}
				t.Fatalf("%d records, want %d", len(got), len(want))
			}
			if !maps.Equal(state, wantState) {
				for k, v := range wantState {
					if state[k] != v {
						t.Errorf("state %q = %q, want %q", k, state[k], v)
					}
				}
				t.Fatalf("state differs (%d keys, want %d)", len(state), len(wantState))
			}
		})
	}
}
