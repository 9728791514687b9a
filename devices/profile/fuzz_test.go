package profile

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzParse: any input either fails to parse with an error or gives a
// profile whose points are finite, inside the fields' bounds and encode
// as valid JSON.
func FuzzParse(f *testing.F) {
	for _, n := range Builtin() {
		b, err := BuiltinSource(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("name: x\nfields: [{name: a, base: [1, 2], noise: 1}]\nanomalies: {share: 0.5, gap: 0, stuck: {weight: 1, length: 1}}"))
	f.Add([]byte("name: x\nfields: [{name: a, base: 1e308, noise: 1e308, cycle: {amplitude: 1e308, period: 2}}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		g := p.NewGenerator(1, 0)
		for range 200 {
			pt := g.Next()
			for i, v := range pt.Values {
				fl := p.Fields[i]
				if fl.Type == "bool" {
					if v != 0 && v != 1 {
						t.Fatalf("bool field %s: %v", fl.Name, v)
					}
					continue
				}
				if math.IsNaN(v) || (fl.Min != nil && v < *fl.Min) || (fl.Max != nil && v > *fl.Max) {
					if !math.IsInf(v, 0) || fl.Min != nil && fl.Max != nil {
						t.Fatalf("field %s: %v outside [%v, %v]", fl.Name, v, fl.Min, fl.Max)
					}
				}
			}
			payload := p.AppendPayload(nil, p.Device(0), &pt, time.Unix(0, 0))
			if !json.Valid(payload) && finite(pt.Values) {
				t.Fatalf("payload is not JSON: %s", payload)
			}
		}
	})
}

func finite(vs []float64) bool {
	for _, v := range vs {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}
