package shadow_test

import (
	"context"
	"testing"

	"github.com/iotpipe/iotpipe/benchmarks/shadowload"
)

// BenchmarkRunner measures shadow updates per second through the whole
// processor runtime as `iotpipe process` runs it (shadowload.Run, also
// `iotpipe bench shadows`): the embedded log (kfake over TCP, two
// partitions) holds b.N updates before the clock starts; the Runner
// consumes them in its consumer group, applies them with state in Pebble
// on disk, and produces every response and changelog record back to the
// log before committing. The log, its broker and the processors share
// the machine's cores, so this is the runtime's end-to-end figure, not
// the processor's (BenchmarkUpdateBatchedParallel).
func BenchmarkRunner(b *testing.B) {
	asBinary(b)
	b.StopTimer()
	res, err := shadowload.Run(context.Background(), shadowload.Options{
		Updates: b.N, Things: 1000, Partitions: 2, Dir: b.TempDir(),
		OnStart: b.StartTimer, OnStop: b.StopTimer,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.Rate(), "updates/s")
}
