package shadow_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/iotpipe/iotpipe/schemas"
)

// TestOutboundRecords checks that the records the processor builds
// itself are those schemas.Outbound.Record builds (same topic, key,
// value and headers in the same order, then the runtime's iot.src), and
// that the changelog record carries only iot.src, for an update (with
// and without a request id), a get, a rejection and a delete.
func TestOutboundRecords(t *testing.T) {
	h, err := processors.NewHarness(shadow.New(shadow.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	topics := schemas.DefaultTopics()
	ctx := context.Background()
	steps := []struct {
		topic, req, payload string
		records             int
	}{
		{"$aws/things/lamp/shadow/name/cfg/update", "r1", `{"state":{"desired":{"on":true}},"clientToken":"t"}`, 4},
		{"$aws/things/lamp/shadow/name/cfg/update", "", `{"state":{"reported":{"on":true}}}`, 3},
		{"$aws/things/lamp/shadow/name/cfg/get", "r2", ``, 1},
		{"$aws/things/lamp/shadow/name/cfg/update", "r3", `{"state":{},"version":9}`, 1},
		{"$aws/things/lamp/shadow/name/cfg/delete", "r4", ``, 2},
	}
	for _, st := range steps {
		recs, err := h.Publish(ctx, "lamp", schemas.Envelope{Topic: st.topic, ClientID: "lamp", RequestID: st.req}, []byte(st.payload))
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != st.records {
			t.Fatalf("%s %s: %d records, want %d", st.topic, st.payload, len(recs), st.records)
		}
		for _, r := range recs {
			n := len(r.Headers) - 1
			if n < 0 || r.Headers[n].Key != schemas.HeaderSource {
				t.Fatalf("%s: last header %v, want %s", r.Topic, r.Headers, schemas.HeaderSource)
			}
			switch r.Topic {
			case topics.Shadows:
				if n != 0 || string(r.Key) != "lamp/cfg" {
					t.Errorf("changelog record key %s headers %v", r.Key, r.Headers)
				}
			case topics.Outbound:
				o := schemas.DecodeOutbound(r)
				want := o.Record(topics.Outbound)
				if string(want.Key) != string(r.Key) || string(want.Value) != string(r.Value) || !reflect.DeepEqual(want.Headers, r.Headers[:n]) {
					t.Errorf("%s: record %s %s %v, Outbound.Record gives %s %s %v", o.Topic, r.Key, r.Value, r.Headers[:n], want.Key, want.Value, want.Headers)
				}
				if o.QoS != 1 || o.Key != "lamp" {
					t.Errorf("%s: qos %d key %s", o.Topic, o.QoS, o.Key)
				}
				answer := o.Topic[len(o.Topic)-len("accepted"):] == "accepted" || o.Topic[len(o.Topic)-len("rejected"):] == "rejected"
				if answer && o.RequestID != st.req || !answer && o.RequestID != "" {
					t.Errorf("%s: request id %q (request %q)", o.Topic, o.RequestID, st.req)
				}
			default:
				t.Fatalf("record on %s: %s", r.Topic, schemas.HeaderValue(r.Headers, "dlq.reason"))
			}
		}
	}
}
