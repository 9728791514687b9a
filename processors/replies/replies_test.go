package replies

import (
	"context"
	"reflect"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas"
)

const topic = "iotpipe.replies"

// A publish to a reply topic is copied to the replies topic as it is
// (key, payload, envelope), with its deterministic id; nothing else is,
// and replay (effects off) emits the same records.
func TestProcess(t *testing.T) {
	tests := []struct {
		name    string
		env     schemas.Envelope
		payload string
		emits   bool
	}{
		{"reply", schemas.Envelope{Type: schemas.EventPublish, Topic: "cmd/gh-1/0/7/shade/0/reply", ClientID: "gh-1", QoS: 1, ReceivedAt: 42}, `{"done":true}`, true},
		{"reply not JSON", schemas.Envelope{Type: schemas.EventPublish, Topic: "cmd/gh-1/1/2/r/0/reply", ClientID: "app", Principal: "token:x", ReceivedAt: 43}, "ok", true},
		{"empty reply", schemas.Envelope{Type: schemas.EventPublish, Topic: "cmd/gh-1/1/2/r/0/reply", ClientID: "gh-1", ReceivedAt: 44}, "", true},
		{"telemetry", schemas.Envelope{Type: schemas.EventPublish, Topic: "greenhouse/gh-1/lux", ClientID: "gh-1", ReceivedAt: 45}, `{"lux":1}`, false},
		{"the command itself", schemas.Envelope{Type: schemas.EventPublish, Topic: "cmd/gh-1/0/7/shade/0", ClientID: "gh-1", ReceivedAt: 46}, `{}`, false},
		{"no id", schemas.Envelope{Type: schemas.EventPublish, Topic: "cmd/gh-1/reply", ClientID: "gh-1", ReceivedAt: 47}, `{}`, false},
		{"subscribed to a reply topic", schemas.Envelope{Type: schemas.EventSubscribed, Topic: "cmd/gh-1/0/7/shade/0/reply", ClientID: "gh-1", ReceivedAt: 48}, ``, false},
		{"connected", schemas.Envelope{Type: schemas.EventConnected, ClientID: "gh-1", ReceivedAt: 49}, `{}`, false},
	}
	for _, dry := range []bool{false, true} {
		h, err := processors.NewHarness(Processor{Topic: topic})
		if err != nil {
			t.Fatal(err)
		}
		h.DryRun = dry
		for i, tt := range tests {
			in := &kgo.Record{Topic: schemas.DefaultTopics().Events, Partition: 1, Offset: int64(10 + i), Key: []byte("gh-1"),
				Value: []byte(tt.payload), Headers: tt.env.Headers()}
			out, err := h.Record(context.Background(), in)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if !tt.emits {
				if len(out) != 0 {
					t.Errorf("%s (dry run %v): emitted %v", tt.name, dry, out)
				}
				continue
			}
			if len(out) != 1 {
				t.Fatalf("%s (dry run %v): emitted %d records, want 1", tt.name, dry, len(out))
			}
			r := out[0]
			if r.Topic != topic || string(r.Key) != "gh-1" || string(r.Value) != tt.payload {
				t.Errorf("%s (dry run %v): emitted %s %q %q", tt.name, dry, r.Topic, r.Key, r.Value)
			}
			env, err := schemas.DecodeEnvelope(r.Headers)
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			if tt.env.Version == 0 {
				tt.env.Version = env.Version
			}
			if !reflect.DeepEqual(env, tt.env) {
				t.Errorf("%s: envelope %+v, want %+v", tt.name, env, tt.env)
			}
			if src := string(schemas.HeaderValue(r.Headers, schemas.HeaderSource)); src != "1/"+strconv.Itoa(10+i)+"/replies/0" {
				t.Errorf("%s: id %q", tt.name, src)
			}
			// The emitted record is its own: the event's may be reused.
			for j := range in.Value {
				in.Value[j] = 'x'
			}
			in.Headers[0].Key = "changed"
			if string(r.Value) != tt.payload || r.Headers[0].Key == "changed" {
				t.Errorf("%s: the emitted record shares the event's", tt.name)
			}
		}
		h.Close()
	}
}
