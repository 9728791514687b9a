package shadow_test

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/iotpipe/iotpipe/benchmarks/shadowload"
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// benchLog is n typical shadow updates over things things (see
// shadowload.Records).
func benchLog(n, things int) []*kgo.Record { return benchLogSeed(n, things, 1) }

func benchLogSeed(n, things int, seed uint64) []*kgo.Record {
	return shadowload.Records(n, things, seed, schemas.DefaultTopics().Events)
}

// asBinary runs a benchmark with the GC target the iotpipe binary runs
// with (processors.GCPercent), unless GOGC is set in the environment:
// every benchmark here calls it, so GOGC=100 in the environment measures
// them at Go's default.
func asBinary(b *testing.B) {
	if os.Getenv("GOGC") != "" {
		return
	}
	old := debug.SetGCPercent(processors.GCPercent)
	b.Cleanup(func() { debug.SetGCPercent(old) })
}

// BenchmarkUpdateParallel is BenchmarkUpdate with one harness (one
// partition, as the runtime runs one task per partition) per core, all
// sharing one Processor: the throughput of the processor over as many
// partitions as cores.
func BenchmarkUpdateParallel(b *testing.B) {
	asBinary(b)
	const logSize = 1 << 15
	p := shadow.New(shadow.Options{})
	n := runtime.GOMAXPROCS(0)
	logs := make([][]*kgo.Record, n)
	harnesses := make([]*processors.Harness, n)
	for i := range logs {
		logs[i] = benchLogSeed(logSize, 1000, uint64(i+1))
		h, err := processors.NewHarness(p)
		if err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		harnesses[i] = h
	}
	var next atomic.Int32
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := int(next.Add(1)-1) % n
		h, recs := harnesses[w], logs[w]
		ctx := context.Background()
		for i := 0; pb.Next(); i++ {
			r := recs[i%logSize]
			r.Offset = int64(i)
			if _, err := h.Record(ctx, r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}

// batchSize is the number of records per batch in the batched
// benchmarks (a runtime worker commits once per fetch it takes, up to a
// poll's 10,000 records).
const batchSize = 1000

// runBatches runs n records of log (cycled, offsets renumbered from 0)
// through h in batches of batchSize, one commit per batch, as the
// runtime runs a poll. partition is set on every record.
func runBatches(ctx context.Context, h *processors.Harness, log []*kgo.Record, partition int32, n int) error {
	batch := make([]*kgo.Record, 0, batchSize)
	for i := 0; i < n; {
		batch = batch[:0]
		for ; i < n && len(batch) < batchSize; i++ {
			r := log[i%len(log)]
			r.Partition = partition
			r.Offset = int64(i)
			batch = append(batch, r)
		}
		if _, err := h.Records(ctx, batch); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkUpdateBatchedParallel is BenchmarkUpdateBatched over two
// partitions processed at once, as the runtime's partition workers do
// (one goroutine per partition): two goroutines, each with its own
// harness (a Harness is not safe for concurrent use) and its own things,
// sharing one Processor (each task has its own memo). b.N updates in all.
func BenchmarkUpdateBatchedParallel(b *testing.B) {
	asBinary(b)
	const (
		logSize    = 1 << 15
		partitions = 2
	)
	p := shadow.New(shadow.Options{})
	logs := make([][]*kgo.Record, partitions)
	harnesses := make([]*processors.Harness, partitions)
	for i := range logs {
		logs[i] = benchLogSeed(logSize, 1000, uint64(i+1))
		h, err := processors.NewHarness(p)
		if err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		harnesses[i] = h
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make([]error, partitions)
	for i := range partitions {
		n := b.N / partitions
		if i == 0 {
			n += b.N % partitions
		}
		wg.Go(func() {
			errs[i] = runBatches(context.Background(), harnesses[i], logs[i], int32(i), n)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
}

type nop struct{}

func (nop) Name() string                                                     { return "nop" }
func (nop) Process(context.Context, *processors.Tx, *processors.Event) error { return nil }

// BenchmarkUpdate measures shadow updates per second through the
// processor in a processors.Harness (state in in-memory Pebble, one
// batch committed per event, as the harness does), over 1000 things.
func BenchmarkUpdate(b *testing.B) {
	runHarness(b, shadow.New(shadow.Options{}), benchLog(1<<16, 1000), false, "updates/s")
}

// BenchmarkUpdateBatched measures shadow updates per second as the
// runtime runs them on one partition: batches of batchSize records, one
// Pebble commit per batch, over 1000 things.
func BenchmarkUpdateBatched(b *testing.B) {
	runHarness(b, shadow.New(shadow.Options{}), benchLog(1<<16, 1000), true, "updates/s")
}

// BenchmarkHarnessBaseline is the harness alone (a processor that does
// nothing), the ceiling BenchmarkUpdate can reach.
func BenchmarkHarnessBaseline(b *testing.B) {
	runHarness(b, nop{}, benchLog(1024, 1000), false, "events/s")
}

// BenchmarkHarnessBaselineBatched is the batched harness alone (a
// processor that does nothing), the ceiling BenchmarkUpdateBatched can
// reach.
func BenchmarkHarnessBaselineBatched(b *testing.B) {
	runHarness(b, nop{}, benchLog(1024, 1000), true, "events/s")
}

// runHarness runs b.N records of log (cycled, offsets renumbered) through
// a harness of proc on one partition, one commit per record or per
// batchSize records, and reports the rate as unit.
func runHarness(b *testing.B, proc processors.Processor, log []*kgo.Record, batched bool, unit string) {
	asBinary(b)
	h, err := processors.NewHarness(proc)
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	var bytes int64
	for _, r := range log {
		bytes += int64(len(r.Value))
	}
	b.SetBytes(bytes / int64(len(log)))
	b.ReportAllocs()
	b.ResetTimer()
	ctx := context.Background()
	if batched {
		err = runBatches(ctx, h, log, 0, b.N)
	} else {
		for i := 0; i < b.N && err == nil; i++ {
			r := log[i%len(log)]
			r.Offset = int64(i)
			_, err = h.Record(ctx, r)
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit)
}
