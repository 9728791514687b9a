package ingest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/benchmarks/mqttload"
)

// BenchmarkPublish measures the hot path end to end: mqttload's 200-byte
// publishes from up to 100 connections over TCP into an ingest server
// writing to an embedded log, every QoS 1 PUBACK after the log's
// acknowledgement, every QoS 0 publish waited for until the log has it.
// allocs/op counts the whole process (generator, ingest and the
// in-process broker) per message; msg/s is acknowledged (QoS 1) or logged
// (QoS 0) messages.
func BenchmarkPublish(b *testing.B) {
	for _, qos := range []byte{1, 0} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) {
			r := newRig(b, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			logged := func() float64 { return counterValue(r.srv.metrics.logged) }
			before := logged()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			res, err := mqttload.Run(context.Background(), mqttload.Config{Addr: r.addr, Conns: min(100, b.N), QoS: qos, Count: int64(b.N)})
			if err != nil {
				b.Fatal(err)
			}
			if res.Errors != 0 {
				b.Fatal(res.ErrorSamples)
			}
			for deadline := time.Now().Add(time.Minute); logged()-before < float64(b.N); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatalf("%v of %d publishes logged", logged()-before, b.N)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
		})
	}
}

