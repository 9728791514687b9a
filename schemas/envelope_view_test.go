package schemas

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestDecodeEnvelopeView(t *testing.T) {
	full := Envelope{Type: EventPublish, Topic: "dt/a", ClientID: "a", Principal: "p", Thing: "lamp-1", QoS: 2, Retain: true, ReceivedAt: 9223372036854775807}
	h := func(kv ...string) []kgo.RecordHeader {
		var hs []kgo.RecordHeader
		for i := 0; i < len(kv); i += 2 {
			hs = append(hs, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
		}
		return hs
	}
	tests := []struct {
		name    string
		headers []kgo.RecordHeader
		wantErr bool
	}{
		{"full", full.Headers(), false},
		{"minimal", h("iot.v", "1", "iot.type", "connected"), false},
		{"19 digits", h("iot.v", "1", "iot.type", "publish", "iot.rx", "1763805600123456789"), false},
		{"negative time", h("iot.v", "1", "iot.type", "publish", "iot.rx", "-5"), false},
		{"plus version", h("iot.v", "+1", "iot.type", "publish"), false},
		{"int64 overflow", h("iot.v", "1", "iot.type", "publish", "iot.rx", "9223372036854775808"), true},
		{"bad time", h("iot.v", "1", "iot.type", "publish", "iot.rx", "12x"), true},
		{"no version", h("iot.type", "publish"), true},
		{"future version", h("iot.v", "2", "iot.type", "publish"), true},
		{"zero version", h("iot.v", "0", "iot.type", "publish"), true},
		{"no type", h("iot.v", "1"), true},
		{"bad qos", h("iot.v", "1", "iot.type", "publish", "iot.qos", "3"), true},
		{"repeated header", h("iot.v", "1", "iot.type", "publish", "iot.topic", "a", "iot.topic", "b"), false},
		{"thing", h("iot.v", "1", "iot.type", "publish", "iot.thing", "lamp-1"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeEnvelopeView(tt.headers)
			want, wantErr := DecodeEnvelope(tt.headers)
			if (err != nil) != tt.wantErr || (wantErr != nil) != tt.wantErr {
				t.Fatalf("err = %v, DecodeEnvelope err = %v, want error %v", err, wantErr, tt.wantErr)
			}
			if err != nil {
				if err.Error() != wantErr.Error() {
					t.Errorf("err = %v, want %v", err, wantErr)
				}
				return
			}
			if diff := cmp.Diff(want.View(), got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("envelope (-want +got):\n%s", diff)
			}
		})
	}
}

// FuzzDecodeEnvelope checks the copy-free envelope read against
// DecodeEnvelope.
func FuzzDecodeEnvelopeView(f *testing.F) {
	f.Add("1", "publish", "dt/a", "a", "p", "t", "1", "1", "1763805600123456789")
	f.Add("+1", "", "", "", "", "", "3", "0", "-1")
	f.Add("01", "connected", "x", "", "", "", "", "", "99999999999999999999")
	f.Fuzz(func(t *testing.T, v, typ, topic, client, principal, thing, qos, retain, rx string) {
		var hs []kgo.RecordHeader
		for i, kv := range [][2]string{{"iot.v", v}, {"iot.type", typ}, {"iot.topic", topic}, {"iot.client", client},
			{"iot.principal", principal}, {"iot.thing", thing}, {"iot.qos", qos}, {"iot.retain", retain}, {"iot.rx", rx}} {
			if kv[1] != "" || i%2 == 0 {
				hs = append(hs, kgo.RecordHeader{Key: kv[0], Value: []byte(kv[1])})
			}
		}
		got, err := DecodeEnvelopeView(hs)
		want, wantErr := DecodeEnvelope(hs)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("err = %v, DecodeEnvelope err = %v", err, wantErr)
		}
		if err == nil && !cmp.Equal(want.View(), got, cmpopts.EquateEmpty()) {
			t.Fatalf("envelope %+v, want %+v", got, want)
		}
	})
}
