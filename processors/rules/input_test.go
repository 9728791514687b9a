package rules

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/rulesql"
)

var storedInputs = []storedInput{
	{Topic: "sensors/dev-1/data", ClientID: "dev-1", Principal: "cert-1", Thing: "dev-1", Timestamp: 1767225600123, Partition: 3, Offset: 42, Raw: []byte(`{"temp": 21.5}`)},
	{Topic: "a", Timestamp: -5, Raw: []byte{}},
	{Topic: "$aws/events/presence/connected/x", Thing: "x", Partition: 2147483647, Offset: 1 << 62, Raw: []byte{0xff, 0, '{'}},
	{Topic: strings.Repeat("t/", 300), ClientID: "ü", Raw: []byte("not json")},
}

func inputOf(s storedInput) *rulesql.Input {
	return &rulesql.Input{Topic: s.Topic, ClientID: s.ClientID, Principal: s.Principal, Thing: s.Thing,
		Timestamp: s.Timestamp, Partition: s.Partition, Offset: s.Offset, Raw: s.Raw}
}

// A stored event reads back as it was, from its binary form and from
// the JSON form of state written before it.
func TestStoredInputForms(t *testing.T) {
	for i, want := range storedInputs {
		old, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		for form, b := range map[string][]byte{"binary": appendInput(nil, inputOf(want)), "json": old} {
			got, err := decodeStored(b)
			if err != nil {
				t.Fatalf("%d %s: %v", i, form, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%d %s: %+v, want %+v", i, form, got, want)
			}
		}
	}
}

// A stored event cut anywhere before its payload, of an unknown
// version, or JSON that does not fit, does not decode.
func TestStoredInputCorrupt(t *testing.T) {
	s := storedInputs[0]
	good := appendInput(nil, inputOf(s))
	for n := range len(good) - len(s.Raw) {
		if _, err := decodeStored(good[:n]); !errors.Is(err, errCorrupt) {
			t.Errorf("cut at %d: %v", n, err)
		}
	}
	for _, b := range [][]byte{
		append([]byte{2}, good[1:]...),
		{storedVersion, 0x7f, 'a'},
		binary.AppendVarint([]byte{storedVersion, 0, 0, 0, 0, 0}, 1<<40), // partition past int32
		[]byte(`{"topic": 5}`),
	} {
		if _, err := decodeStored(b); err == nil {
			t.Errorf("% x decoded", b)
		}
	}
}

var episodes = []episodeRecord{
	{Start: 7, Input: appendInput(nil, inputOf(storedInputs[0])), Output: []byte(`{"temp":50}`)},
	{Start: 1 << 40, Input: appendInput(nil, inputOf(storedInputs[1])), Output: []byte(`{}`), Fired: []byte(`{"temp":51}`)},
}

// An episode record reads back as it was, from its binary form and from
// the JSON form of state written before it (whose event is JSON too).
func TestEpisodeForms(t *testing.T) {
	for i, want := range episodes {
		got, err := decodeEpisode(want.appendBinary(nil))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("%d binary: %+v, want %+v", i, got, want)
		}
		in, _ := json.Marshal(storedInputs[i])
		old, err := json.Marshal(jsonEpisode{Start: want.Start, Input: in, Output: want.Output, Fired: want.Fired})
		if err != nil {
			t.Fatal(err)
		}
		got, err = decodeEpisode(old)
		if err != nil {
			t.Fatal(err)
		}
		want.Input = in
		if !reflect.DeepEqual(*got, want) {
			t.Errorf("%d json: %+v, want %+v", i, got, want)
		}
	}
	good := episodes[1].appendBinary(nil)
	for _, b := range [][]byte{nil, {2}, good[:len(good)-1], append(good, 0), []byte(`{"start": "x"}`)} {
		if _, err := decodeEpisode(b); err == nil {
			t.Errorf("% x decoded", b)
		}
	}
}

// State written in the JSON forms (a window group's last event, a FOR
// rule's episode records) is read after an upgrade: restored from a
// changelog whose values are rewritten to the old forms, the rules go on
// exactly as without the rewrite.
func TestOldStateFormsStillRead(t *testing.T) {
	src := `
CREATE RULE per_minute AS SELECT topic(2) AS dev, count(*) AS n, max(temp) AS hi FROM 'sensors/+/data' GROUP BY TUMBLE(INTERVAL 1 MINUTE), topic(2) THEN kafka(topic => 'm');
CREATE RULE warm AS SELECT temp FROM 'sensors/+/data' WHERE temp > 24 FOR 10 SECONDS RESOLVE THEN kafka(topic => 'warm');`
	batches := memoEvents(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	run := func(g *rig, from, to int) []string { return g.batches(batches[from:to]) }
	want := run(newRig(t, src, Options{}), 0, len(batches))
	for _, cut := range []int{9, 20, 33} {
		a := newRig(t, src, Options{})
		head := run(a, 0, cut)
		var cl []*kgo.Record
		rewritten := map[byte]int{}
		for _, r := range a.h.Changelog(0) {
			r := &kgo.Record{Key: r.Key, Value: r.Value}
			if kind, sub := ruleStateKey(r.Key); r.Value != nil && len(sub) > 0 {
				switch {
				case kind == 'w' && sub[0] == 'g':
					s, err := decodeStored(r.Value)
					if err != nil {
						t.Fatal(err)
					}
					r.Value, _ = json.Marshal(s)
					rewritten['g']++
				case kind == 't' && sub[0] == 'e':
					e, err := decodeEpisode(r.Value)
					if err != nil {
						t.Fatal(err)
					}
					s, err := decodeStored(e.Input)
					if err != nil {
						t.Fatal(err)
					}
					in, _ := json.Marshal(s)
					r.Value, _ = json.Marshal(jsonEpisode{Start: e.Start, Input: in, Output: e.Output, Fired: e.Fired})
					rewritten['e']++
				}
			}
			cl = append(cl, r)
		}
		if rewritten['g'] == 0 || rewritten['e'] == 0 {
			t.Fatalf("cut %d: nothing to rewrite (%v)", cut, rewritten)
		}
		b := newRig(t, src, Options{})
		if err := b.h.Restore(0, cl); err != nil {
			t.Fatal(err)
		}
		if got := run(b, cut, len(batches)); !reflect.DeepEqual(got, want[len(head):]) {
			t.Fatalf("cut %d: after the rewrite the rules emitted %d records, want %d", cut, len(got), len(want)-len(head))
		}
	}
}

// ruleStateKey splits a changelog key of a window or FOR rule,
// "rules" 0 kind rule 0 fingerprint 0 sub, into kind and sub.
func ruleStateKey(k []byte) (kind byte, sub []byte) {
	rest, ok := bytes.CutPrefix(k, []byte("rules\x00"))
	if !ok || len(rest) == 0 {
		return 0, nil
	}
	kind, rest = rest[0], rest[1:]
	for range 2 {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return 0, nil
		}
		rest = rest[i+1:]
	}
	return kind, rest
}

func FuzzDecodeStored(f *testing.F) {
	for _, s := range storedInputs {
		f.Add(appendInput(nil, inputOf(s)))
		old, _ := json.Marshal(s)
		f.Add(old)
	}
	for _, e := range episodes {
		f.Add(e.appendBinary(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := decodeStored(b); err == nil {
			again, err := decodeStored(appendInput(nil, inputOf(s)))
			if err != nil || !reflect.DeepEqual(again, s) {
				t.Fatalf("%+v does not round trip: %+v, %v", s, again, err)
			}
		}
		if e, err := decodeEpisode(b); err == nil {
			again, err := decodeEpisode(e.appendBinary(nil))
			if err != nil || !reflect.DeepEqual(again, e) {
				t.Fatalf("%+v does not round trip: %+v, %v", e, again, err)
			}
		}
	})
}
