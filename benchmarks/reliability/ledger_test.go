package reliability

import (
	"fmt"
	"testing"
	"time"
	"unicode/utf8"
)

func TestLedgerCheck(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	tests := []struct {
		name    string
		acked   map[string]int // id -> second acknowledged
		refused []string
		logged  []string
		lost    []string
		dup     map[string]int
		unacked int
	}{
		{name: "all logged once", acked: map[string]int{"a/0": 1, "a/1": 2}, logged: []string{"a/1", "a/0"}},
		{name: "one lost", acked: map[string]int{"a/0": 1, "a/1": 2}, logged: []string{"a/0"}, lost: []string{"a/1"}},
		{name: "one twice", acked: map[string]int{"a/0": 1}, logged: []string{"a/0", "a/0"}, dup: map[string]int{"a/0": 2}},
		{name: "unacknowledged logged", acked: map[string]int{"a/0": 1}, logged: []string{"a/0", "a/1"}, unacked: 1},
		{name: "refused and absent", acked: map[string]int{"a/0": 1}, refused: []string{"a/1"}, logged: []string{"a/0"}},
		{name: "unacknowledged twice", logged: []string{"b/3", "b/3"}, dup: map[string]int{"b/3": 2}, unacked: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLedger()
			for id, s := range tt.acked {
				l.Sent()
				l.Answered(id, 0, at(s))
			}
			for _, id := range tt.refused {
				l.Sent()
				l.Answered(id, 0x97, at(9))
			}
			c := l.Check(tt.logged)
			if len(c.Lost) != len(tt.lost) || len(c.Duplicated) != len(tt.dup) || c.Unacked != tt.unacked || c.Acked != len(tt.acked) || c.Logged != len(tt.logged) {
				t.Fatalf("check %+v; want lost %v, duplicated %v, %d unacknowledged", c, tt.lost, tt.dup, tt.unacked)
			}
			for _, id := range tt.lost {
				if c.Lost[id] != at(tt.acked[id]) {
					t.Errorf("lost %s acknowledged at %v, want %v", id, c.Lost[id], at(tt.acked[id]))
				}
			}
			for id, n := range tt.dup {
				if c.Duplicated[id] != n {
					t.Errorf("%s logged %d times, want %d", id, c.Duplicated[id], n)
				}
			}
			if (len(c.Problems(3)) == 0) != (len(tt.lost)+len(tt.dup) == 0) {
				t.Errorf("problems %q", c.Problems(3))
			}
			st := l.Stats()
			if st.Sent != len(tt.acked)+len(tt.refused) || st.Refused[0x97] != len(tt.refused) {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestLedgerTimes(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := NewLedger()
	for i := range 10 {
		l.Answered(fmt.Sprintf("d/%d", i), 0, t0.Add(time.Duration(i)*time.Second))
	}
	if first, ok := l.FirstAckAfter(t0.Add(4500 * time.Millisecond)); !ok || !first.Equal(t0.Add(5*time.Second)) {
		t.Errorf("first ack after 4.5s: %v %v, want 5s", first, ok)
	}
	if _, ok := l.FirstAckAfter(t0.Add(9 * time.Second)); ok {
		t.Error("an ack after the last one")
	}
	if at, ok := l.AwaitAckAfter(t0.Add(8*time.Second), time.Minute); !ok || !at.Equal(t0.Add(9*time.Second)) {
		t.Errorf("await an ack after 8s: %v %v", at, ok)
	}
	if n := l.AckedBetween(t0.Add(2*time.Second), t0.Add(5*time.Second)); n != 3 {
		t.Errorf("acked in [2s, 5s): %d, want 3", n)
	}
	if st := l.Stats(); !st.LastAck.Equal(t0.Add(9 * time.Second)) {
		t.Errorf("last ack %v", st.LastAck)
	}
	c := l.Check([]string{"d/0", "d/1", "d/2"})
	if n := c.LostBetween(t0.Add(3*time.Second), t0.Add(6*time.Second)); n != 3 {
		t.Errorf("lost in [3s, 6s): %d, want 3", n)
	}
	late := time.Now()
	go l.Answered("d/late", 0, late.Add(50*time.Millisecond))
	if at, ok := l.AwaitAckAfter(late, 10*time.Second); !ok || !at.Equal(late.Add(50*time.Millisecond)) {
		t.Errorf("await an ack that comes later: %v %v", at, ok)
	}
}

func TestPublishID(t *testing.T) {
	tests := []struct {
		payload string
		id      string
		ok      bool
	}{
		{string(TelemetryPayload("rel-03", 17)), "rel-03/17", true},
		{string(ShadowPayload("rel-03", 19)), "rel-03/19", true},
		{`{"dev":"x","seq":0}`, "x/0", true},
		{`{"dev":"x"}`, "", false},
		{`{"seq":3}`, "", false},
		{`{"clientToken":""}`, "", false},
		{`not json`, "", false},
		{`{"dev":"x","seq":1.5}`, "", false},
	}
	for _, tt := range tests {
		id, ok := PublishID([]byte(tt.payload))
		if id != tt.id || ok != tt.ok {
			t.Errorf("PublishID(%s) = %q, %v; want %q, %v", tt.payload, id, ok, tt.id, tt.ok)
		}
	}
}

// FuzzPublishID: the id of every payload the load makes reads back, and
// no payload makes PublishID panic or give an id that is not
// "<dev>/<seq>"-shaped when it comes from dev and seq.
func FuzzPublishID(f *testing.F) {
	f.Add("rel-00", 0, []byte(`{"dev":"a","seq":1}`))
	f.Add("dev with \"quotes\"", 1<<40, []byte(`{"clientToken":"a/1"}`))
	f.Add("", -1, []byte(`{"dev":"a","seq":99999999999999999999}`))
	f.Fuzz(func(t *testing.T, dev string, seq int, payload []byte) {
		if id, ok := PublishID(payload); ok && id == "" {
			t.Fatalf("empty id accepted from %q", payload)
		}
		if dev == "" || !utf8.ValidString(dev) {
			return
		}
		want := fmt.Sprintf("%s/%d", dev, seq)
		if id, ok := PublishID(TelemetryPayload(dev, seq)); !ok || id != want {
			t.Fatalf("telemetry of %q/%d reads back as %q, %v", dev, seq, id, ok)
		}
		if id, ok := PublishID(ShadowPayload(dev, seq)); !ok || id != want {
			t.Fatalf("shadow update of %q/%d reads back as %q, %v", dev, seq, id, ok)
		}
	})
}
