package schemas

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	envs := []Envelope{
		{Type: EventPublish, Topic: "farm/sensors/123", ClientID: "sensor-123", Principal: "anonymous", QoS: 1, Retain: true, ReceivedAt: 1795390719634949606},
		{Type: EventPublish, Topic: "a", ClientID: "c", QoS: 0, ReceivedAt: 1},
		{Type: EventConnected, Topic: "$aws/events/presence/connected/c", ClientID: "c", Principal: "u", ReceivedAt: 42},
		{Type: EventPublish, Topic: "$aws/things/t/shadow/update", ClientID: "http", Principal: "http:anonymous", QoS: 1, ReceivedAt: 7, RequestID: "abc"},
		{Type: EventPublish, Topic: "dt/lamp-1", ClientID: "lamp-1-app", Principal: "3f1c", Thing: "lamp-1", QoS: 1, ReceivedAt: 8},
		{Type: EventDisconnected, Topic: "$aws/events/presence/disconnected/c", ClientID: "c", Principal: "p", Thing: "t", ReceivedAt: 9},
	}
	for _, e := range envs {
		h := e.Headers()
		got, err := DecodeEnvelope(h)
		if err != nil {
			t.Fatalf("%+v: %v", e, err)
		}
		e.Version = EnvelopeVersion
		if got != e {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, e)
		}
		// Values never alias one another: appending to one leaves the rest.
		for i := range h {
			h[i].Value = append(h[i].Value, 'x')
		}
		for i := range h {
			if n := len(h[i].Value); n == 0 || h[i].Value[n-1] != 'x' {
				t.Fatalf("header %s = %q", h[i].Key, h[i].Value)
			}
		}
	}
}

func TestDecodeEnvelopeErrors(t *testing.T) {
	tests := []struct {
		name    string
		headers []kgo.RecordHeader
		future  bool
	}{
		{"no version", []kgo.RecordHeader{{Key: HeaderType, Value: []byte("publish")}}, false},
		{"bad version", []kgo.RecordHeader{{Key: HeaderVersion, Value: []byte("x")}, {Key: HeaderType, Value: []byte("publish")}}, false},
		{"future version", []kgo.RecordHeader{{Key: HeaderVersion, Value: []byte("9")}, {Key: HeaderType, Value: []byte("publish")}}, true},
		{"no type", []kgo.RecordHeader{{Key: HeaderVersion, Value: []byte("1")}}, false},
		{"bad qos", []kgo.RecordHeader{{Key: HeaderVersion, Value: []byte("1")}, {Key: HeaderType, Value: []byte("publish")}, {Key: HeaderQoS, Value: []byte("7")}}, false},
		{"bad time", []kgo.RecordHeader{{Key: HeaderVersion, Value: []byte("1")}, {Key: HeaderType, Value: []byte("publish")}, {Key: HeaderReceived, Value: []byte("soon")}}, false},
	}
	for _, tt := range tests {
		_, err := DecodeEnvelope(tt.headers)
		if err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
		if errors.Is(err, ErrFutureVersion) != tt.future {
			t.Errorf("%s: err %v, future=%v", tt.name, err, tt.future)
		}
	}
	// Unknown headers are ignored (the version rule).
	h := append((&Envelope{Type: EventPublish, ReceivedAt: 1}).Headers(), kgo.RecordHeader{Key: "iot.new", Value: []byte("x")})
	if _, err := DecodeEnvelope(h); err != nil {
		t.Fatalf("unknown header: %v", err)
	}
	// A record written before iot.thing decodes with no thing; one
	// with it keeps version 1 (an optional header, the version rule).
	old := (&Envelope{Type: EventPublish, ReceivedAt: 1}).Headers()
	if e, err := DecodeEnvelope(old); err != nil || e.Thing != "" || e.Version != 1 {
		t.Fatalf("envelope without iot.thing: %+v, %v", e, err)
	}
	withThing := (&Envelope{Type: EventPublish, Thing: "lamp-1", ReceivedAt: 1}).Headers()
	if string(HeaderValue(withThing, HeaderThing)) != "lamp-1" || string(HeaderValue(withThing, HeaderVersion)) != "1" {
		t.Fatalf("headers %v", withThing)
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add("1", "publish", "a/b", "c", "lamp-1", "0", "123")
	f.Fuzz(func(t *testing.T, v, typ, topic, client, thing, qos, rx string) {
		h := []kgo.RecordHeader{
			{Key: HeaderVersion, Value: []byte(v)}, {Key: HeaderType, Value: []byte(typ)},
			{Key: HeaderTopic, Value: []byte(topic)}, {Key: HeaderClientID, Value: []byte(client)},
			{Key: HeaderThing, Value: []byte(thing)},
			{Key: HeaderQoS, Value: []byte(qos)}, {Key: HeaderReceived, Value: []byte(rx)},
		}
		e, err := DecodeEnvelope(h)
		if err != nil {
			return
		}
		e2, err := DecodeEnvelope(e.Headers())
		if err != nil || e2.Topic != e.Topic || e2.ClientID != e.ClientID || e2.Thing != e.Thing || e2.ReceivedAt != e.ReceivedAt || e2.Type != e.Type {
			t.Fatalf("re-encode of %+v: %+v %v", e, e2, err)
		}
	})
}

func BenchmarkEnvelopeHeaders(b *testing.B) {
	e := Envelope{Type: EventPublish, Topic: "bench/17/telemetry", ClientID: "bench-17", Principal: "anonymous", QoS: 1, ReceivedAt: 1795390719634949606}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = e.Headers()
	}
}

// BenchmarkDecodeEnvelope decodes a typical publish envelope (its strings
// share one allocation).
func BenchmarkDecodeEnvelope(b *testing.B) {
	e := Envelope{Type: EventPublish, Topic: "bench/17/telemetry", ClientID: "bench-17", Principal: "anonymous", QoS: 1, ReceivedAt: 1795390719634949606}
	h := e.Headers()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := DecodeEnvelope(h); err != nil {
			b.Fatal(err)
		}
	}
}
