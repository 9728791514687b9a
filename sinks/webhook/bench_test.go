package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkDeliver measures one signed POST to a local server through the
// deliverer (no Kafka).
func BenchmarkDeliver(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	o, _ := Options{Clients: &eventlog.Log{}}.withDefaults() // no log needed
	d := newDeliverer(o.HTTPClient, o.policy(), nil)
	req := &request{key: "0/1/r/0", url: srv.URL, target: "t", secret: []byte("secret"),
		body: []byte(`{"thing":"greenhouse-7","lux":41234.5,"event":"threshold"}`)}
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		var out outcome
		if _, done := d.try(context.Background(), req, &out); !done || out.kind != kindDelivered {
			b.Fatal(out.err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
}

// BenchmarkExecutor measures firings/s from the actions topic (kfake over
// TCP, 4 partitions) to local HTTP receivers, commits included.
func BenchmarkExecutor(b *testing.B) {
	for _, targets := range []int{1, 4} {
		b.Run(fmt.Sprintf("targets=%d", targets), func(b *testing.B) {
			br := newBroker(b, 4)
			var got atomic.Int64
			var urls []string
			for range targets {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					_, _ = io.Copy(io.Discard, r.Body)
					got.Add(1)
					w.WriteHeader(http.StatusNoContent)
				}))
				b.Cleanup(srv.Close)
				urls = append(urls, srv.URL)
			}
			o := testOptions(br, []byte("secret"))
			o.CommitInterval = time.Second
			o.TargetConcurrency = 0 // the default, 8
			startExecutor(b, o)
			produce := func(from, n int) {
				recs := make([]*kgo.Record, 0, 1000)
				flush := func() {
					if err := br.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
						b.Fatal(err)
					}
					recs = recs[:0]
				}
				for i := from; i < from+n; i++ {
					a := schemas.Action{Key: fmt.Sprintf("%d/%d/bench/0", i%4, i), Rule: "bench", Type: "webhook",
						Params:  map[string]any{"url": urls[i%len(urls)]},
						Payload: map[string]any{"thing": "greenhouse-7", "lux": 41234.5, "i": i}}
					v, _ := json.Marshal(a)
					recs = append(recs, &kgo.Record{Topic: topics.Actions, Partition: int32(i % 4), Key: []byte(a.Key), Value: v})
					if len(recs) == cap(recs) {
						flush()
					}
				}
				flush()
			}
			// Warm up: the group is joined and every target connected.
			produce(0, 16)
			waitFor(b, "warm-up deliveries", func() bool { return got.Load() == 16 })
			b.ResetTimer()
			start := time.Now()
			produce(16, b.N)
			waitFor(b, "benchmark deliveries", func() bool { return got.Load() == int64(16+b.N) })
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
		})
	}
}
