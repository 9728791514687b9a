package mqttload

import (
	"bufio"
	"context"
	"io"
	"testing"
	"time"
)

// BenchmarkPublishEncode measures the generator's per-message cost:
// rewriting the template and copying it into the connection's buffer.
func BenchmarkPublishEncode(b *testing.B) {
	tmpl, err := newPublishTemplate("bench/1/telemetry", 1, DefaultSize, 1)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(io.Discard, 64<<10)
	b.ReportAllocs()
	b.SetBytes(int64(len(tmpl.pkt)))
	for i := 0; b.Loop(); i++ {
		tmpl.set(uint16(i)|1, uint64(i))
		_, _ = w.Write(tmpl.pkt)
	}
}

// BenchmarkHistogramRecord measures recording one latency.
func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(1000 + 1000*(i&1023)))
	}
}

// BenchmarkLoadMochi runs the whole generator against an in-process
// mochi-mqtt broker (allow-all, default routing) with up to 100
// connections; msg/s is acknowledged (QoS 1) or sent (QoS 0) messages.
// Generator and broker share the CPU, so this bounds both from below.
func BenchmarkLoadMochi(b *testing.B) {
	for _, bc := range []struct {
		name string
		qos  byte
	}{{"qos1", 1}, {"qos0", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			addr, _ := startMochi(b)
			b.ReportAllocs()
			res, err := Run(context.Background(), Config{Addr: addr, Conns: min(100, b.N), QoS: bc.qos, Count: int64(b.N)})
			if err != nil {
				b.Fatal(err)
			}
			if res.Errors != 0 {
				b.Fatal(res.ErrorSamples)
			}
			rate := res.SentPerSec
			if bc.qos > 0 {
				rate = float64(res.TotalAcked) / res.Duration.Seconds()
			}
			b.ReportMetric(rate, "msg/s")
		})
	}
}
