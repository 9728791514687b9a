package schemas

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestDeadLetter(t *testing.T) {
	src := &kgo.Record{Topic: "iotpipe.actions", Partition: 3, Offset: 42, Key: []byte("k"), Value: []byte("v"),
		Headers: []kgo.RecordHeader{{Key: "iot.src", Value: []byte("0/1/a/0")}}}
	tests := []struct {
		name  string
		rec   *kgo.Record
		extra []kgo.RecordHeader
		want  []string // header keys and values, in order
	}{
		{"own headers first, then the DLQ ones", src, nil,
			[]string{"iot.src", "0/1/a/0", HeaderDLQStage, "kafka", HeaderDLQReason, "boom", HeaderDLQSource, "iotpipe.actions/3/42"}},
		{"extra headers before the DLQ ones", &kgo.Record{Topic: "t", Offset: 7}, []kgo.RecordHeader{{Key: "dlq.rule", Value: []byte("r1")}},
			[]string{"dlq.rule", "r1", HeaderDLQStage, "kafka", HeaderDLQReason, "boom", HeaderDLQSource, "t/0/7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := DeadLetter("iotpipe.dlq", tt.rec, "kafka", errors.New("boom"), tt.extra...)
			if d.Topic != "iotpipe.dlq" || string(d.Key) != string(tt.rec.Key) || string(d.Value) != string(tt.rec.Value) {
				t.Fatalf("record %s %q %q", d.Topic, d.Key, d.Value)
			}
			var got []string
			for _, h := range d.Headers {
				got = append(got, h.Key, string(h.Value))
			}
			if len(got) != len(tt.want) {
				t.Fatalf("headers %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("headers %q, want %q", got, tt.want)
				}
			}
		})
	}
	if h := AppendDLQHeaders(nil, "rules", "r", ""); len(h) != 2 {
		t.Fatalf("no source: %d headers, want stage and reason only", len(h))
	}
	if len(src.Headers) != 1 {
		t.Fatal("DeadLetter changed the source record's headers")
	}
}
