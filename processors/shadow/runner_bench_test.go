package shadow_test

import (
	"context"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkRunner measures shadow updates per second through the whole
// processor runtime as `iotpipe process` runs it: the embedded log
// (kfake over TCP, two partitions) holds b.N updates before the clock
// starts; the Runner consumes them in its consumer group, applies them
// with state in Pebble on disk, and produces every response and
// changelog record back to the log before committing. The clock stops
// when the changelog holds b.N records. The log, its broker and the
// processors share the machine's cores, so this is the runtime's
// end-to-end figure, not the processor's (BenchmarkUpdateBatchedParallel).
func BenchmarkRunner(b *testing.B) {
	asBinary(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := logtest.Quiet()
	l := logtest.Open(b, 2)
	topics := l.Topics()
	prod, err := l.Client(kgo.ProducerLinger(5 * time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	log := benchLog(1<<15, 1000)
	for i := 0; i < b.N; {
		batch := make([]*kgo.Record, 0, 5000)
		for ; i < b.N && len(batch) < cap(batch); i++ {
			r := log[i%len(log)]
			batch = append(batch, &kgo.Record{Topic: topics.Events, Key: r.Key, Value: r.Value, Headers: r.Headers})
		}
		if err := prod.ProduceSync(ctx, batch...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	adm := kadm.NewClient(prod)
	r, err := processors.NewRunner(l, []processors.Processor{shadow.New(shadow.Options{Topics: topics})},
		processors.RunnerOptions{Topics: topics, StateDir: b.TempDir(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.ResetTimer()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for {
		ends, err := adm.ListEndOffsets(ctx, topics.Shadows)
		if err != nil {
			b.Fatal(err)
		}
		var n int64
		ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
		if n >= int64(b.N) {
			break
		}
		select {
		case err := <-done:
			b.Fatalf("runner stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
	cancel()
	<-done
}
