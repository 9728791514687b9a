package replay

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
)

func TestReadSelection(t *testing.T) {
	h := newHistory(t, 4)
	var evs []ev
	for i := range 60 {
		thing := fmt.Sprintf("dev-%d", i%6)
		topic := fmt.Sprintf("farm/%s/temp", thing)
		if i%5 == 0 {
			topic = fmt.Sprintf("farm/%s/hum", thing)
		}
		e := ev{thing: thing, topic: topic, payload: fmt.Sprintf(`{"i":%d}`, i), at: time.Duration(i) * time.Second}
		if i%10 == 9 {
			e.typ, e.topic = schemas.EventConnected, "$aws/events/presence/connected/"+thing
		}
		evs = append(evs, e)
	}
	h.produce(evs...)
	index := func(e *Event) int {
		var i int
		fmt.Sscanf(string(e.Payload), `{"i":%d}`, &i)
		return i
	}
	want := func(keep func(i int, e ev) bool) string {
		var s []string
		for i, e := range evs {
			if keep(i, e) {
				s = append(s, fmt.Sprint(i))
			}
		}
		return strings.Join(s, " ")
	}
	tests := []struct {
		name string
		sel  Selection
		keep func(i int, e ev) bool
	}{
		{"all, in receive-time order across partitions", Selection{}, func(int, ev) bool { return true }},
		{"thing", Selection{Thing: "dev-3"}, func(_ int, e ev) bool { return e.thing == "dev-3" }},
		{"topic filter", Selection{Topic: "farm/+/hum"}, func(_ int, e ev) bool { return strings.HasSuffix(e.topic, "/hum") }},
		{"wildcard skips $ topics", Selection{Topic: "#"}, func(_ int, e ev) bool { return e.typ == "" }},
		{"type", Selection{Types: []schemas.EventType{schemas.EventConnected}}, func(_ int, e ev) bool { return e.typ == schemas.EventConnected }},
		{"time window [from, to)", Selection{From: t0.Add(20 * time.Second), To: t0.Add(30 * time.Second)},
			func(i int, _ ev) bool { return i >= 20 && i < 30 }},
		{"from only", Selection{From: t0.Add(55 * time.Second)}, func(i int, _ ev) bool { return i >= 55 }},
		{"limit", Selection{Limit: 7}, func(i int, _ ev) bool { return i < 7 }},
		{"everything at once", Selection{Thing: "dev-1", Topic: "farm/#", From: t0.Add(10 * time.Second), To: t0.Add(50 * time.Second)},
			func(i int, e ev) bool { return e.thing == "dev-1" && e.typ == "" && i >= 10 && i < 50 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := h.read(tt.sel)
			var s []string
			for _, e := range got {
				if e.Err != nil {
					t.Fatalf("event %d/%d: %v", e.Partition, e.Offset, e.Err)
				}
				s = append(s, fmt.Sprint(index(e)))
			}
			if w := want(tt.keep); strings.Join(s, " ") != w {
				t.Errorf("events %s\nwant   %s", strings.Join(s, " "), w)
			}
		})
	}
}

// TestReadSeeksByTime: a time bound is found with ListOffsets, so a read
// of the last minutes of a long history, or of one thing, reads about
// what it returns, not the log from its start.
func TestReadSeeksByTime(t *testing.T) {
	h := newHistory(t, 4)
	var evs []ev
	for i := range 4000 {
		evs = append(evs, ev{thing: fmt.Sprintf("d%d", i%40), topic: "t", payload: "{}", at: time.Duration(i) * time.Second})
	}
	h.produce(evs...)
	got, read := h.read(Selection{From: t0.Add(3900 * time.Second)})
	if len(got) != 100 {
		t.Fatalf("%d events, want 100", len(got))
	}
	// SeekSlack (1 minute) before the bound is read too, and dropped.
	if read > 100+60+4 {
		t.Errorf("read %d records for 100 events: the read did not seek by time", read)
	}
	got, read = h.read(Selection{From: t0.Add(1000 * time.Second), To: t0.Add(1010 * time.Second)})
	if len(got) != 10 || read > 10+2*60+8 {
		t.Errorf("window: %d events, %d records read", len(got), read)
	}
	got, read = h.read(Selection{Thing: "d7"})
	if len(got) != 100 || read >= 2000 {
		t.Errorf("thing: %d events, %d records read (only its partition must be read)", len(got), read)
	}
	p := PartitionOf("d7", 4)
	for _, e := range got {
		if e.Partition != p {
			t.Errorf("event of d7 in partition %d, PartitionOf says %d", e.Partition, p)
		}
	}
}

func TestReadFollow(t *testing.T) {
	h := newHistory(t, 2)
	h.produce(ev{thing: "a", topic: "t", payload: `1`}, ev{thing: "b", topic: "t", payload: `2`, at: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sel := Selection{Follow: true, Limit: 4}
	plan, err := PlanRead(ctx, h.log, sel)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- Read(ctx, h.log, sel, plan, nil, func(e *Event) error { got <- string(e.Payload); return nil })
	}()
	for range 2 {
		<-got
	}
	h.produce(ev{thing: "a", topic: "t", payload: `3`, at: 2 * time.Second}, ev{thing: "b", topic: "t", payload: `4`, at: 3 * time.Second})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(got)
	var later []string
	for p := range got {
		later = append(later, p)
	}
	if len(later) != 2 {
		t.Errorf("followed events %v, want 3 and 4", later)
	}
}

func TestSelectionValidate(t *testing.T) {
	bad := []Selection{
		{Topic: "a/#/b"},
		{From: t0, To: t0},
		{Follow: true, To: t0},
		{Limit: -1},
	}
	for _, s := range bad {
		if err := s.Validate(); err == nil {
			t.Errorf("%+v accepted", s)
		}
	}
}

// TestReadMergesChunks: partitions' readers pass events on in chunks;
// the merge still gives every event once, by receive time, then
// partition, then offset (here 3 events share each millisecond), with a
// limit that stops in the middle of chunks.
func TestReadMergesChunks(t *testing.T) {
	const n, partitions = 5000, 8
	h := newHistory(t, partitions)
	evs := make([]ev, n)
	type place struct {
		at        time.Duration
		partition int32
		offset    int64
	}
	want := make([]place, n)
	offsets := map[int32]int64{}
	for i := range evs {
		thing := fmt.Sprintf("dev-%02d", i%37)
		evs[i] = ev{thing: thing, topic: "farm/" + thing + "/temp", payload: `{}`, at: time.Duration(i/3) * time.Millisecond}
		p := PartitionOf(thing, partitions)
		want[i] = place{evs[i].at, p, offsets[p]}
		offsets[p]++
	}
	h.produce(evs...)
	slices.SortFunc(want, func(a, b place) int {
		return cmp.Or(cmp.Compare(a.at, b.at), cmp.Compare(a.partition, b.partition), cmp.Compare(a.offset, b.offset))
	})
	for _, limit := range []int{0, 1000} {
		got, _ := h.read(Selection{Limit: limit})
		w := want
		if limit > 0 {
			w = want[:limit]
		}
		if len(got) != len(w) {
			t.Fatalf("limit %d: %d events, want %d", limit, len(got), len(w))
		}
		for i, e := range got {
			if g := (place{e.Time().Sub(t0), e.Partition, e.Offset}); g != w[i] {
				t.Fatalf("limit %d: event %d is %+v, want %+v", limit, i, g, w[i])
			}
		}
	}
}
