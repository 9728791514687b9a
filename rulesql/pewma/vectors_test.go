package pewma

import (
	"encoding/csv"
	"github.com/iotpipe/iotpipe/internal/sharedtest"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// vectorRow is one row of a vectors_*.csv file; fields absent from the
// short files are NaN (and hasFull is false).
type vectorRow struct {
	line                                            int
	index, t                                        int64
	value, mean, std, z, prob, alpha, meanAf, stdAf float64
	anomaly                                         bool
	hasFull, missing                                bool
}

func readVectors(t *testing.T, path string) []vectorRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open vectors: %v", err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if len(recs) < 2 {
		t.Fatalf("%s: no rows", path)
	}
	col := map[string]int{}
	for i, name := range recs[0] {
		col[name] = i
	}
	for _, need := range []string{"index", "value", "mean", "std", "probability", "is_anomaly"} {
		if _, ok := col[need]; !ok {
			t.Fatalf("%s: no column %q", path, need)
		}
	}
	_, full := col["t"]
	num := func(rec []string, line int, name string) float64 {
		s := rec[col[name]]
		if s == "" || strings.EqualFold(s, "nan") {
			return math.NaN()
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("%s:%d: column %s: %v", path, line, name, err)
		}
		return v
	}
	var rows []vectorRow
	for i, rec := range recs[1:] {
		line := i + 2
		r := vectorRow{line: line, hasFull: full}
		r.index = int64(num(rec, line, "index"))
		r.value = num(rec, line, "value")
		r.mean = num(rec, line, "mean")
		r.std = num(rec, line, "std")
		r.prob = num(rec, line, "probability")
		switch rec[col["is_anomaly"]] {
		case "0":
		case "1":
			r.anomaly = true
		default:
			t.Fatalf("%s:%d: is_anomaly %q", path, line, rec[col["is_anomaly"]])
		}
		r.z, r.alpha, r.meanAf, r.stdAf = math.NaN(), math.NaN(), math.NaN(), math.NaN()
		if full {
			r.t = int64(num(rec, line, "t"))
			r.z = num(rec, line, "z")
			r.alpha = num(rec, line, "alpha")
			r.meanAf = num(rec, line, "mean_after")
			r.stdAf = num(rec, line, "std_after")
			r.missing = rec[col["phase"]] == "missing"
		}
		rows = append(rows, r)
	}
	return rows
}

// close reports whether got matches want within a relative 1e-9 (exactly
// when want is 0).
func close(got, want float64) bool {
	if got == want {
		return true
	}
	return math.Abs(got-want) <= 1e-9*math.Max(math.Abs(got), math.Abs(want))
}

// stateStd is the standard deviation a state predicts.
func stateStd(s State) float64 { return math.Sqrt(math.Max(s.S2-s.S1*s.S1, 0)) }

func vectorFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(sharedtest.Path(t, "pewma"), "vectors_*.csv"))
	if err != nil {
		t.Fatalf("glob vectors: %v", err)
	}
	if len(files) == 0 {
		t.Fatalf("no vectors_*.csv in %s", sharedtest.Path(t, "pewma"))
	}
	return files
}

// TestVectors replays every shared vector file through Update and checks
// every column it has: the score (mean, std, z, probability, anomaly) and,
// for the _full files, t, alpha and the post-update mean and std.
func TestVectors(t *testing.T) {
	p := DefaultParams()
	zThr := p.ZThreshold()
	for _, path := range vectorFiles(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			rows := readVectors(t, path)
			var s State
			anomalies := 0
			for _, r := range rows {
				before := s
				res := s.Update(p, r.value)
				fail := func(what string, got, want any) {
					t.Helper()
					t.Errorf("%s:%d (index %d, x=%v): %s = %v, want %v", filepath.Base(path), r.line, r.index, r.value, what, got, want)
				}
				if math.IsNaN(r.value) {
					if !res.Skipped || res.Anomaly || res.Probability != 0 {
						fail("result of a missing point", res, "Skipped only")
					}
					if s != before {
						fail("state after a missing point", s, before)
					}
					if !math.IsNaN(r.prob) {
						fail("vector probability of a missing point", r.prob, "empty")
					}
					// The vector's mean/std of a missing point are the state's.
					if !close(s.S1, r.mean) || !close(stateStd(s), r.std) {
						fail("state mean/std", [2]float64{s.S1, stateStd(s)}, [2]float64{r.mean, r.std})
					}
				} else {
					if res.Skipped {
						fail("Skipped", true, false)
					}
					checks := []struct {
						name      string
						got, want float64
					}{
						{"mean", res.Mean, r.mean},
						{"std", res.Std, r.std},
						{"probability", res.Probability, r.prob},
						{"lower", res.Lower, r.mean - zThr*r.std},
						{"upper", res.Upper, r.mean + zThr*r.std},
					}
					for _, c := range checks {
						if !close(c.got, c.want) {
							fail(c.name, c.got, c.want)
						}
					}
					if res.Anomaly != r.anomaly {
						fail("anomaly", res.Anomaly, r.anomaly)
					}
					// The |Z| form of the anomaly rule agrees on these vectors.
					if zForm := s.T > int64(p.T) && math.Abs(res.Z) >= zThr; zForm != r.anomaly {
						fail("anomaly by |Z| >= ZThreshold", zForm, r.anomaly)
					}
				}
				if res.Anomaly {
					anomalies++
				}
				if !r.hasFull {
					continue
				}
				if s.T != r.t {
					fail("t", s.T, r.t)
				}
				if !close(s.S1, r.meanAf) {
					fail("mean after", s.S1, r.meanAf)
				}
				if !close(stateStd(s), r.stdAf) {
					fail("std after", stateStd(s), r.stdAf)
				}
				if r.missing {
					continue
				}
				if !close(res.Z, r.z) {
					fail("z", res.Z, r.z)
				}
				if a := alpha(p, s.T, res.Probability); !close(a, r.alpha) {
					fail("alpha", a, r.alpha)
				}
			}
			wantAnomalies := 0
			for _, r := range rows {
				if r.anomaly {
					wantAnomalies++
				}
			}
			if anomalies != wantAnomalies {
				t.Errorf("%d anomalies, want %d", anomalies, wantAnomalies)
			}
		})
	}
}

// TestRestart interrupts each vector series at several points: the state
// is marshalled, decoded into a fresh State and the run continues; every
// result and the final state must be identical (bit for bit) to an
// uninterrupted run.
func TestRestart(t *testing.T) {
	p := DefaultParams()
	for _, path := range vectorFiles(t) {
		rows := readVectors(t, path)
		var ref State
		want := make([]Result, len(rows))
		for i, r := range rows {
			want[i] = ref.Update(p, r.value)
		}
		for _, cut := range []int{0, 1, p.T - 1, p.T, p.T + 1, len(rows) / 2, len(rows) - 1} {
			var s State
			for i, r := range rows {
				if i == cut {
					b, err := s.MarshalBinary()
					if err != nil {
						t.Fatalf("marshal: %v", err)
					}
					var restored State
					if err := restored.UnmarshalBinary(b); err != nil {
						t.Fatalf("unmarshal: %v", err)
					}
					s = restored
				}
				if got := s.Update(p, r.value); !sameResult(got, want[i]) {
					t.Fatalf("%s cut at %d: point %d = %+v, uninterrupted %+v", filepath.Base(path), cut, i, got, want[i])
				}
			}
			if s != ref {
				t.Errorf("%s cut at %d: final state %+v, uninterrupted %+v", filepath.Base(path), cut, s, ref)
			}
		}
	}
}

// sameResult compares bit for bit (NaN never appears in a Result).
func sameResult(a, b Result) bool { return a == b }
