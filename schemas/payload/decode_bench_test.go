package payload

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// benchDocs are the benchmark's payloads: a typical ~200-byte telemetry
// point, a nested shadow-style document and an array-heavy payload.
var benchDocs = []string{"telemetry", "shadow", "array"}

// BenchmarkDecode measures Decode on each of benchDocs; its "reference"
// sub-benchmarks measure referenceDecode, the decoder before, in the
// same run. cpu-ns/op is the process's CPU time (the GC's included) per
// decode: steadier than ns/op on a busy machine.
func BenchmarkDecode(b *testing.B) {
	for _, name := range benchDocs {
		data, err := os.ReadFile(filepath.Join("testdata", name+".json"))
		if err != nil {
			b.Fatal(err)
		}
		for _, impl := range []struct {
			name   string
			decode func([]byte) (any, error)
		}{
			{"new", Decode},
			{"reference", func(d []byte) (any, error) { return referenceDecode(d, false) }},
		} {
			b.Run(name+"/"+impl.name, func(b *testing.B) {
				b.SetBytes(int64(len(data)))
				b.ReportAllocs()
				cpu := cpuTime()
				for b.Loop() {
					if _, err := impl.decode(data); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// cpuTime returns the CPU time this process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
