package shadow_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/iotpipe/iotpipe/processors/shadow/document"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestParseTopic(t *testing.T) {
	tests := []struct {
		topic string
		want  shadow.Request
		ok    bool
	}{
		{"$aws/things/lamp/shadow/update", shadow.Request{Thing: "lamp", Op: shadow.OpUpdate, Prefix: "$aws/things/lamp/shadow/"}, true},
		{"$aws/things/lamp/shadow/get", shadow.Request{Thing: "lamp", Op: shadow.OpGet, Prefix: "$aws/things/lamp/shadow/"}, true},
		{"$aws/things/lamp/shadow/delete", shadow.Request{Thing: "lamp", Op: shadow.OpDelete, Prefix: "$aws/things/lamp/shadow/"}, true},
		{"$aws/things/lamp/shadow/name/cfg/update", shadow.Request{Thing: "lamp", Name: "cfg", Op: shadow.OpUpdate, Prefix: "$aws/things/lamp/shadow/name/cfg/"}, true},
		{"$aws/things/lamp/shadow/name/cfg/delete", shadow.Request{Thing: "lamp", Name: "cfg", Op: shadow.OpDelete, Prefix: "$aws/things/lamp/shadow/name/cfg/"}, true},
		{"$aws/things/lamp/shadow/update/accepted", shadow.Request{}, false},
		{"$aws/things/lamp/shadow/name/cfg/get/rejected", shadow.Request{}, false},
		{"$aws/things/lamp/shadow/name/update", shadow.Request{}, false},
		{"$aws/things/lamp/shadow/name//update", shadow.Request{}, false},
		{"$aws/things//shadow/update", shadow.Request{}, false},
		{"$aws/things/lamp/shadow/list", shadow.Request{}, false},
		{"$aws/things/lamp/shadows/update", shadow.Request{}, false},
		{"things/lamp/shadow/update", shadow.Request{}, false},
		{"", shadow.Request{}, false},
	}
	for _, tt := range tests {
		got, ok := shadow.ParseTopic(tt.topic)
		if ok != tt.ok || got != tt.want {
			t.Errorf("ParseTopic(%q) = %+v, %t; want %+v, %t", tt.topic, got, ok, tt.want, tt.ok)
		}
	}
}

func TestKey(t *testing.T) {
	if got := string(shadow.Key("lamp", "")); got != "lamp" {
		t.Errorf("classic key %q", got)
	}
	if got := string(shadow.Key("lamp", "cfg")); got != "lamp/cfg" {
		t.Errorf("named key %q", got)
	}
}

// randomLog builds a log of shadow requests over a few things and
// shadows: updates (some with versions, some invalid), gets, deletes,
// requests from other clients and events that are not shadow requests.
func randomLog(seed uint64, n int) []*kgo.Record {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	recs := make([]*kgo.Record, 0, n)
	for i := 0; i < n; i++ {
		thing := fmt.Sprintf("thing-%d", rng.IntN(8))
		prefix := "$aws/things/" + thing + "/shadow/"
		if rng.IntN(3) == 0 {
			prefix += "name/s" + fmt.Sprint(rng.IntN(2)) + "/"
		}
		client := thing
		if rng.IntN(20) == 0 {
			client = "someone-else"
		}
		var topic, payload string
		switch r := rng.IntN(100); {
		case r < 70:
			topic = prefix + "update"
			section := []string{"desired", "reported"}[rng.IntN(2)]
			key := []string{"a", "b", "c", "n"}[rng.IntN(4)]
			var val string
			switch rng.IntN(6) {
			case 0:
				val = "null"
			case 1:
				val = fmt.Sprintf(`{"x":%d,"y":[%d,%d]}`, rng.IntN(3), rng.IntN(3), rng.IntN(3))
			case 2:
				val = fmt.Sprintf(`"%c"`, 'a'+rng.IntN(3))
			default:
				val = fmt.Sprint(rng.IntN(4))
			}
			payload = fmt.Sprintf(`{"state":{%q:{%q:%s}},"clientToken":"c%d"`, section, key, val, i)
			if rng.IntN(10) == 0 {
				payload += fmt.Sprintf(`,"version":%d`, rng.IntN(6))
			}
			payload += "}"
			if rng.IntN(25) == 0 {
				payload = `{"state":"broken"`
			}
		case r < 85:
			topic = prefix + "get"
		case r < 92:
			topic = prefix + "delete"
		default:
			topic = "devices/" + thing + "/telemetry"
			payload = `{"t":1}`
		}
		env := schemas.Envelope{Type: schemas.EventPublish, Topic: topic, ClientID: client, QoS: 1,
			ReceivedAt: time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC).UnixNano(), RequestID: fmt.Sprint("r", i)}
		recs = append(recs, &kgo.Record{Topic: "iotpipe.events", Key: []byte(thing), Value: []byte(payload), Headers: env.Headers(), Offset: int64(i)})
	}
	return recs
}

// run feeds log through a fresh harness, one second per event, and
// returns every emitted record and the partition's state.
func run(t *testing.T, opts shadow.Options, log []*kgo.Record) ([]*kgo.Record, map[string]string) {
	return runAt(t, opts, log, 0)
}

// runBatched is run with the records in batches of n (one commit per
// batch, as the runtime runs a poll): the memo then serves shadows
// written earlier in the same, not yet committed, batch.
func runBatched(t *testing.T, opts shadow.Options, log []*kgo.Record, n int) ([]*kgo.Record, map[string]string) {
	t.Helper()
	return runWith(t, opts, func(h *processors.Harness) (out []*kgo.Record) {
		for len(log) > 0 {
			b := log[:min(n, len(log))]
			log = log[len(b):]
			recs, err := h.Records(context.Background(), b)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, recs...)
		}
		return out
	})
}

// runAt is run with the harness clock moved by skew: a rebuild later
// must not change anything, since timestamps come from the log.
func runAt(t *testing.T, opts shadow.Options, log []*kgo.Record, skew time.Duration) ([]*kgo.Record, map[string]string) {
	t.Helper()
	return runWith(t, opts, func(h *processors.Harness) (out []*kgo.Record) {
		start := h.Now.Add(skew)
		for i, r := range log {
			h.Now = start.Add(time.Duration(i) * time.Second)
			recs, err := h.Record(context.Background(), r)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, recs...)
		}
		return out
	})
}

// runWith runs feed over a fresh harness of a processor with opts and
// returns what feed returns (the emitted records) and the state of
// partition 0.
func runWith(t *testing.T, opts shadow.Options, feed func(*processors.Harness) []*kgo.Record) ([]*kgo.Record, map[string]string) {
	t.Helper()
	h, err := processors.NewHarness(shadow.New(opts))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	out := feed(h)
	snap, err := h.Snapshot(0)
	if err != nil {
		t.Fatal(err)
	}
	return out, snap
}

// TestDeterminism runs the same event log through fresh harnesses: with
// and without the memo of decoded shadows, in batches as the runtime
// runs them, and with the processing clock a year later (a rebuild). The
// state snapshots and every emitted record must be byte-identical.
func TestDeterminism(t *testing.T) {
	log := randomLog(42, 3000)
	out1, snap1 := run(t, shadow.Options{}, log)
	out2, snap2 := run(t, shadow.Options{}, log)
	out3, snap3 := run(t, shadow.Options{NoMemo: true}, log)
	out4, snap4 := runBatched(t, shadow.Options{}, log, 7)
	out5, snap5 := runAt(t, shadow.Options{}, log, 365*24*time.Hour)
	if len(snap1) < 10 {
		t.Fatalf("only %d state keys: the log exercised too little", len(snap1))
	}
	for i, s := range []map[string]string{snap2, snap3, snap4, snap5} {
		if !maps.Equal(snap1, s) {
			t.Errorf("run %d: state snapshot differs", i+2)
		}
	}
	for i, o := range [][]*kgo.Record{out2, out3, out4, out5} {
		if len(o) != len(out1) {
			t.Fatalf("run %d: %d records, want %d", i+2, len(o), len(out1))
		}
		for j := range o {
			a, b := out1[j], o[j]
			if a.Topic != b.Topic || string(a.Key) != string(b.Key) || string(a.Value) != string(b.Value) || !reflect.DeepEqual(a.Headers, b.Headers) {
				t.Fatalf("run %d: record %d differs:\n%s %s\n%s %s", i+2, j, a.Topic, a.Value, b.Topic, b.Value)
			}
		}
	}
}

// TestVersionsCountAcceptedUpdates checks, over a random log, that every
// shadow's version equals the number of update/accepted messages it got,
// that every message is valid JSON, that the changelog's last record of
// each shadow equals its state, and that accepted/rejected answers carry
// the request id while delta and documents do not.
func TestVersionsCountAcceptedUpdates(t *testing.T) {
	log := randomLog(7, 3000)
	out, snap := run(t, shadow.Options{}, log)
	accepted := map[string]int64{}
	changelog := map[string]string{}
	topics := schemas.DefaultTopics()
	kinds := map[string]int{}
	for _, r := range out {
		if !json.Valid(r.Value) {
			t.Fatalf("invalid JSON on %s: %s", r.Topic, r.Value)
		}
		switch r.Topic {
		case topics.Shadows:
			changelog[string(r.Key)] = string(r.Value)
			continue
		case topics.Outbound:
		default:
			t.Fatalf("record on %s: %s", r.Topic, schemas.HeaderValue(r.Headers, "dlq.reason"))
		}
		o := schemas.DecodeOutbound(r)
		req, suffix := splitResponse(t, o.Topic)
		kinds[suffix]++
		if o.QoS != 1 || o.Key != req.Thing {
			t.Errorf("%s: qos %d key %s", o.Topic, o.QoS, o.Key)
		}
		answers := suffix == "update/accepted" || suffix == "update/rejected" || suffix == "get/accepted" ||
			suffix == "get/rejected" || suffix == "delete/accepted" || suffix == "delete/rejected"
		if answers != (o.RequestID != "") {
			t.Errorf("%s: request id %q", o.Topic, o.RequestID)
		}
		if suffix == "update/accepted" {
			accepted[string(shadow.Key(req.Thing, req.Name))]++
		}
	}
	for _, k := range []string{"update/accepted", "update/rejected", "update/delta", "update/documents", "get/accepted", "get/rejected", "delete/accepted", "delete/rejected"} {
		if kinds[k] == 0 {
			t.Errorf("the log produced no %s message", k)
		}
	}
	get := func(k []byte) ([]byte, bool, error) {
		v, ok := snap[shadow.Name+"\x00"+string(k)]
		return []byte(v), ok, nil
	}
	for key, n := range accepted {
		thing, name := key, ""
		for i := range key {
			if key[i] == '/' {
				thing, name = key[:i], key[i+1:]
			}
		}
		s, _, err := shadow.Read(get, thing, name)
		if err != nil {
			t.Fatal(err)
		}
		if s.Version != n {
			t.Errorf("%s: version %d, accepted updates %d", key, s.Version, n)
		}
		if stored := snap[shadow.Name+"\x00"+key]; changelog[key] != stored {
			t.Errorf("%s: last changelog record differs from the state:\n%s\n%s", key, changelog[key], stored)
		}
	}
}

func splitResponse(t *testing.T, topic string) (shadow.Request, string) {
	t.Helper()
	for _, op := range []string{"update", "get", "delete"} {
		for _, end := range []string{"accepted", "rejected", "delta", "documents"} {
			suffix := op + "/" + end
			if len(topic) > len(suffix) && topic[len(topic)-len(suffix):] == suffix {
				req, ok := shadow.ParseTopic(topic[:len(topic)-len(end)-1])
				if !ok {
					t.Fatalf("bad response topic %s", topic)
				}
				return req, suffix
			}
		}
	}
	t.Fatalf("bad response topic %s", topic)
	return shadow.Request{}, ""
}

// FuzzProcess publishes an arbitrary payload on each shadow operation
// after a valid update: the processor must not fail (no DLQ record),
// every message must be valid JSON, and a rejected update must leave the
// state as it was.
func FuzzProcess(f *testing.F) {
	for _, s := range []string{
		`{"state":{"desired":{"a":1}}}`, `{"state":{"reported":{"a":{"b":[1,2]}}},"version":1}`,
		`{"state":null}`, `{"clientToken":"x"}`, `{"state":{"desired":[1]}}`, `nope`, ``, `{"state":{"delta":{}}}`,
	} {
		f.Add(s, uint8(0))
	}
	h, err := processors.NewHarness(shadow.New(shadow.Options{Limits: document.Limits{MaxSize: 1024}}))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close() })
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, payload string, op uint8) {
		topic := "$aws/things/fz/shadow/" + []string{"update", "get", "delete", "name/n/update"}[op%4]
		if _, err := h.Publish(ctx, "fz", schemas.Envelope{Topic: "$aws/things/fz/shadow/update", ClientID: "fz"}, []byte(`{"state":{"reported":{"base":1}}}`)); err != nil {
			t.Fatal(err)
		}
		before, err := h.Snapshot(0)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := h.Publish(ctx, "fz", schemas.Envelope{Topic: topic, ClientID: "fz"}, []byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		rejected := false
		for _, r := range recs {
			if r.Topic == schemas.DefaultTopics().DLQ {
				t.Fatalf("processor failed: %s", schemas.HeaderValue(r.Headers, "dlq.reason"))
			}
			if !json.Valid(r.Value) {
				t.Fatalf("invalid JSON: %s", r.Value)
			}
			if o := schemas.DecodeOutbound(r); len(o.Topic) > 9 && o.Topic[len(o.Topic)-9:] == "/rejected" {
				rejected = true
			}
		}
		after, err := h.Snapshot(0)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range after {
			if k != "\x00offset" && !json.Valid([]byte(v)) {
				t.Fatalf("state %q is not JSON: %s", k, v)
			}
		}
		if rejected {
			delete(before, "\x00offset")
			delete(after, "\x00offset")
			if !maps.Equal(before, after) {
				t.Fatalf("a rejected request changed the state")
			}
		}
	})
}

// TestEncoding rejects payloads that are not UTF-8 with 415, on every
// operation, and leaves the shadow unchanged.
func TestEncoding(t *testing.T) {
	h, err := processors.NewHarness(shadow.New(shadow.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	if _, err := h.Publish(ctx, "u", schemas.Envelope{Topic: "$aws/things/u/shadow/update", ClientID: "u"}, []byte(`{"state":{"reported":{"a":1}}}`)); err != nil {
		t.Fatal(err)
	}
	for _, op := range []string{"update", "get", "delete"} {
		recs, err := h.Publish(ctx, "u", schemas.Envelope{Topic: "$aws/things/u/shadow/" + op, ClientID: "u"}, []byte("{\"state\":{\"reported\":{\"\xff\":1}}}"))
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 {
			t.Fatalf("%s: %d records", op, len(recs))
		}
		o := schemas.DecodeOutbound(recs[0])
		want := `{"code":415,"message":"Unsupported documented encoding; supported encoding is UTF-8","timestamp":1767225600}`
		if o.Topic != "$aws/things/u/shadow/"+op+"/rejected" || string(o.Payload) != want {
			t.Errorf("%s: %s %s", op, o.Topic, o.Payload)
		}
	}
	snap, _ := h.Snapshot(0)
	s, ok, err := shadow.Read(func(k []byte) ([]byte, bool, error) {
		v, ok := snap[shadow.Name+"\x00"+string(k)]
		return []byte(v), ok, nil
	}, "u", "")
	if err != nil || !ok || s.Version != 1 {
		t.Errorf("shadow after rejected requests: %+v %t %v", s, ok, err)
	}
}
