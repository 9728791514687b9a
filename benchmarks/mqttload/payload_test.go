package mqttload

import (
	"encoding/json"
	"math"
	"testing"
)

func TestPayloadIsValidJSONOfExactSize(t *testing.T) {
	tests := []struct {
		size, conn int
		seq        uint64
	}{
		{MinSize, 0, 0},
		{DefaultSize, 7, 42},
		{DefaultSize, 9999999, math.MaxUint64},
		{1000, 123, 1999},
	}
	for _, tt := range tests {
		p, err := newPayload(tt.size, tt.conn)
		if err != nil {
			t.Fatalf("newPayload(%d, %d): %v", tt.size, tt.conn, err)
		}
		p.set(tt.seq)
		if len(p.buf) != tt.size {
			t.Errorf("size %d: payload is %d bytes", tt.size, len(p.buf))
		}
		var v struct {
			Temperature float64 `json:"temperature"`
			Seq         uint64  `json:"seq"`
			Conn        int     `json:"conn"`
			Pad         string  `json:"pad"`
		}
		if err := json.Unmarshal(p.buf, &v); err != nil {
			t.Fatalf("payload %s is not JSON: %v", p.buf, err)
		}
		wantTemp := float64(1500+tt.seq%2000) / 100
		if v.Seq != tt.seq || v.Conn != tt.conn || math.Abs(v.Temperature-wantTemp) > 1e-9 {
			t.Errorf("decoded %+v, want seq %d conn %d temperature %v", v, tt.seq, tt.conn, wantTemp)
		}
	}
	if _, err := newPayload(MinSize-1, 0); err == nil {
		t.Error("payload below MinSize accepted")
	}
}

func TestPublishSetDoesNotAllocate(t *testing.T) {
	tmpl, err := newPublishTemplate("bench/1/telemetry", 1, DefaultSize, 1)
	if err != nil {
		t.Fatal(err)
	}
	seq := uint64(0)
	if n := testing.AllocsPerRun(1000, func() {
		seq++
		tmpl.set(uint16(seq), seq)
	}); n != 0 {
		t.Errorf("set allocates %v times per message", n)
	}
}
