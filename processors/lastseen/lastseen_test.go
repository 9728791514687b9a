package lastseen

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

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

var things = []Thing{
	{Name: "a", Messages: 3, FirstSeen: time.Unix(0, 1767225600123456789).UTC(), LastSeen: time.Unix(0, 1767225700000000001).UTC(), LastTopic: "t/a", Connected: true, Offset: 41},
	{Name: "", FirstSeen: time.Unix(0, 0).UTC(), LastSeen: time.Unix(0, 0).UTC()},
	{Name: "ü/ß", Messages: 1 << 50, FirstSeen: time.Unix(-5, 0).UTC(), LastSeen: time.Unix(1<<33, 7).UTC(), Offset: 1 << 62},
}

// A record reads back as it was, from its binary form and from the JSON
// form of state written before it.
func TestRecordForms(t *testing.T) {
	for i, want := range things {
		old, err := json.Marshal(&want)
		if err != nil {
			t.Fatal(err)
		}
		for form, b := range map[string][]byte{"binary": want.appendBinary(nil), "json": old} {
			got, err := decode(b)
			if err != nil {
				t.Fatalf("%d %s: %v", i, form, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%d %s: %+v, want %+v", i, form, got, want)
			}
		}
	}
	good := things[0].appendBinary(nil)
	for n := range len(good) {
		if _, err := decode(good[:n]); !errors.Is(err, errCorrupt) {
			t.Errorf("cut at %d: %v", n, err)
		}
	}
	for _, b := range [][]byte{append(good, 0), append(good[:len(good)-1], 2), append([]byte{2}, good[1:]...), []byte(`{"messages": "x"}`)} {
		if _, err := decode(b); err == nil {
			t.Errorf("% x decoded", b)
		}
	}
}

// GET /api/things/{name} answers the same JSON for a record in either
// form.
func TestHandlerReadsEitherForm(t *testing.T) {
	old, _ := json.Marshal(&things[0])
	var bodies []string
	for _, b := range [][]byte{old, things[0].appendBinary(nil)} {
		w := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/api/things/a", nil)
		req.SetPathValue("name", "a")
		Handler(oneRecord(b)).ServeHTTP(w, req)
		if w.Code != 200 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		bodies = append(bodies, w.Body.String())
	}
	if bodies[0] != bodies[1] {
		t.Fatalf("JSON form: %s\nbinary form: %s", bodies[0], bodies[1])
	}
}

type oneRecord []byte

func (r oneRecord) Read(string, []byte) ([]byte, bool, error) { return r, true, nil }

// aborter fails fatally on a payload "abort", which abandons the batch.
type aborter struct{}

func (aborter) Name() string { return "aborter" }
func (aborter) Process(_ context.Context, _ *processors.Tx, ev *processors.Event) error {
	if string(ev.Payload) == "abort" {
		return processors.Fatal(errors.New("abort"))
	}
	return nil
}

// The records kept in memory mirror the state: runs that drop them
// before every batch, or whose batches abort and run again, leave the
// same state as a run that keeps them.
func TestMemoMirrorsState(t *testing.T) {
	run := func(restart, abort bool) map[string]string {
		h, err := processors.NewHarness(Processor{}, aborter{})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		ctx := context.Background()
		types := []schemas.EventType{schemas.EventPublish, schemas.EventPublish, schemas.EventConnected, schemas.EventDisconnected}
		for b := range 20 {
			var recs []*kgo.Record
			for i := range 30 {
				n := b*30 + i
				env := schemas.Envelope{Type: types[n%len(types)], Topic: fmt.Sprintf("t/%d", n), ReceivedAt: int64(n) * 1e6}
				recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprint("thing-", n%7)), Value: []byte(`{}`), Headers: env.Headers(), Offset: int64(n)})
			}
			if restart {
				h.Restart()
			}
			if abort {
				bad := slices.Insert(slices.Clone(recs), 15, &kgo.Record{Key: []byte("thing-1"), Value: []byte("abort"), Headers: recs[0].Headers})
				if _, err := h.Records(ctx, bad); err == nil {
					t.Fatal("the batch did not abort")
				}
			}
			if _, err := h.Records(ctx, recs); err != nil {
				t.Fatal(err)
			}
		}
		snap, err := h.Snapshot(0)
		if err != nil {
			t.Fatal(err)
		}
		return snap
	}
	want := run(false, false)
	if len(want) != 8 {
		t.Fatalf("%d keys", len(want))
	}
	for _, c := range []struct{ restart, abort bool }{{true, false}, {false, true}} {
		if got := run(c.restart, c.abort); !maps.Equal(got, want) {
			t.Errorf("restart %v abort %v: state differs", c.restart, c.abort)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, th := range things {
		f.Add(th.appendBinary(nil))
		old, _ := json.Marshal(&th)
		f.Add(old)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		th, err := decode(b)
		if err != nil {
			return
		}
		again, err := decode(th.appendBinary(nil))
		if err != nil || !reflect.DeepEqual(again, th) && !(len(b) > 0 && b[0] == '{') {
			t.Fatalf("%+v does not round trip: %+v, %v", th, again, err)
		}
	})
}
