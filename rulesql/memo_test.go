package rulesql

import (
	"errors"
	"reflect"
	"testing"
)

// memoState is a memState that keeps decoded values (env.Memo), counts
// its reads and can be made to fail its writes.
type memoState struct {
	memState
	kept     map[string]any
	gets     int
	failSets bool
}

func (m *memoState) Get(k []byte) ([]byte, bool, error) {
	m.gets++
	return m.memState.Get(k)
}

func (m *memoState) Set(k, v []byte) error {
	if m.failSets {
		return errors.New("store unavailable")
	}
	return m.memState.Set(k, v)
}

func (m *memoState) Recall(k []byte) (any, bool) { v, ok := m.kept[string(k)]; return v, ok }
func (m *memoState) Keep(k []byte, v any)        { m.kept[string(k)] = v }

// pewma() keeps its decoded state in a store's memo: it reads each
// key's state once, gives what it gives without a memo, and a write
// that fails leaves the state it kept as it was (the point is not
// absorbed).
func TestPewmaMemo(t *testing.T) {
	rules := mustCompile(t, "SELECT pewma(v) AS a, pewma(v * 2, 0.9) AS b FROM 'm/+'")
	plain := memState{}
	memo := &memoState{memState: memState{}, kept: map[string]any{}}
	points := []float64{20, 21, 19, 20, 22, 20, 35, 20, 21}
	for i, x := range points {
		for _, thing := range []string{"t1", "t2"} {
			in := &Input{Payload: map[string]any{"v": x + float64(len(thing)*i)}, Thing: thing}
			want, _, err := rules[0].Eval(in, plain)
			if err != nil {
				t.Fatal(err)
			}
			if i == 4 {
				// The write fails: no output, nothing absorbed.
				memo.failSets = true
				if _, _, err := rules[0].Eval(in, memo); err == nil {
					t.Fatal("a failing write gave no error")
				}
				memo.failSets = false
			}
			got, _, err := rules[0].Eval(in, memo)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("point %d of %s: %v with a memo, %v without", i, thing, got, want)
			}
		}
	}
	if !reflect.DeepEqual(memo.memState, plain) {
		t.Errorf("stored states differ:\n%v\n%v", memo.memState, plain)
	}
	if memo.gets != 4 {
		t.Errorf("%d state reads, want 4 (one per call site and thing)", memo.gets)
	}
}

// A pewma() item's result is built as an object only when it is output
// or used whole: WHERE reads its fields directly. Every way of reading
// it gives what the object gives (the CASE makes the same item eager).
func TestPewmaLazyResult(t *testing.T) {
	conds := []string{
		"a.anomaly", "a.z > 1", "a.t >= 3", "a.missing = 1", "isUndefined(a.missing)", "a.mean.x = 1",
		"a['std'] > 0", "a <> 5", "a.anomaly OR a.t = 2", "NOT a.anomaly AND a.probability < 0.3",
	}
	for _, cond := range conds {
		t.Run(cond, func(t *testing.T) {
			lazy := mustCompile(t, "SELECT pewma(v) AS a, v FROM 't' WHERE "+cond)[0]
			eager := mustCompile(t, "SELECT CASE WHEN v = v THEN pewma(v) END AS a, v FROM 't' WHERE "+cond)[0]
			sl, se := memState{}, memState{}
			fired := 0
			for i, x := range []float64{20, 21, 19, 20, 22, 20, 35, 20, 21, 20} {
				in := &Input{Payload: map[string]any{"v": x}, Thing: "t1"}
				ol, fl, err := lazy.Eval(in, sl)
				if err != nil {
					t.Fatal(err)
				}
				oe, fe, err := eager.Eval(in, se)
				if err != nil {
					t.Fatal(err)
				}
				if fl != fe || !reflect.DeepEqual(ol, oe) {
					t.Fatalf("point %d: lazy %v %v, eager %v %v", i, fl, ol, fe, oe)
				}
				if fl {
					fired++
				}
			}
			t.Logf("fired %d times", fired)
		})
	}
	v := mustCompile(t, "SELECT VALUE pewma(v) FROM 't'")[0]
	out, _, err := v.Eval(&Input{Payload: map[string]any{"v": 1.0}, Thing: "t1"}, memState{})
	if m, ok := out.(map[string]any); err != nil || !ok || len(m) != 8 {
		t.Fatalf("SELECT VALUE pewma: %v %v", out, err)
	}
}
