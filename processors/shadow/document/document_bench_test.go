package document

import (
	"testing"

	"github.com/iotpipe/iotpipe/schemas/payload"
)

// BenchmarkApply measures one typical reported update (about 150 bytes)
// applied to a shadow with desired and reported state, all messages
// encoded.
func BenchmarkApply(b *testing.B) {
	req := []byte(`{"state":{"reported":{"temp":22.51,"humidity":40,"battery":88,"led":{"color":"red","brightness":50},"fw":"1.4.2","online":true}},"clientToken":"dev-123"}`)
	s := Shadow{Thing: "device-00001"}
	for _, p := range [][]byte{req, []byte(`{"state":{"desired":{"led":{"color":"blue","brightness":50},"mode":"eco","interval":20}}}`)} {
		v, err := payload.Decode(p)
		if err != nil {
			b.Fatal(err)
		}
		u, rej := ParseUpdate(v, nil, len(p), Limits{})
		if rej != nil {
			b.Fatal(rej)
		}
		s, _, _ = Apply(&s, &u, 1, Limits{})
	}
	v, _ := payload.Decode(req)
	u, _ := ParseUpdate(v, nil, len(req), Limits{})
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, rej := Apply(&s, &u, 2, Limits{}); rej != nil {
			b.Fatal(rej)
		}
	}
}

// BenchmarkDecodeStored measures decoding a stored document (the work
// the processor's memo saves).
func BenchmarkDecodeStored(b *testing.B) {
	stored := []byte(`{"thing":"device-00001","shadow":"","state":{"desired":{"interval":20,"led":{"brightness":50,"color":"blue"},"mode":"eco"},"reported":{"battery":88,"fw":"1.4.2","humidity":40,"led":{"brightness":50,"color":"red"},"online":true,"temp":22.51}},"metadata":{"desired":{"interval":{"timestamp":1},"led":{"brightness":{"timestamp":1},"color":{"timestamp":1}},"mode":{"timestamp":1}},"reported":{"battery":{"timestamp":1},"fw":{"timestamp":1},"humidity":{"timestamp":1},"led":{"brightness":{"timestamp":1},"color":{"timestamp":1}},"online":{"timestamp":1},"temp":{"timestamp":1}}},"version":2,"timestamp":1,"deleted":false}`)
	b.SetBytes(int64(len(stored)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := DecodeStored(stored); err != nil {
			b.Fatal(err)
		}
	}
}
