package payload

import (
	"os"
	"path/filepath"
	"testing"
)

// benchDocs are the benchmark's payloads: a typical ~200-byte telemetry
// point, a nested shadow-style document and an array-heavy payload.
var benchDocs = []string{"telemetry", "shadow", "array"}

// BenchmarkDecode measures Decode on each of benchDocs; its "reference"
// sub-benchmarks measure referenceDecode, the decoder before, in the
// same run.
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
				for b.Loop() {
					if _, err := impl.decode(data); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
