package rulesql

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/iotpipe/iotpipe/rulesql/compile"
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

// inPlaceState is a store with a memo that writes a key's new value
// over its old one (as the processors' call overlay and caches reuse
// their space).
type inPlaceState struct {
	vals map[string][]byte
	kept map[string]any
}

func (m *inPlaceState) Get(k []byte) ([]byte, bool, error) {
	v, ok := m.vals[string(k)]
	return v, ok, nil
}
func (m *inPlaceState) Set(k, v []byte) error {
	if old, ok := m.vals[string(k)]; ok && len(old) == len(v) {
		copy(old, v)
		return nil
	}
	m.vals[string(k)] = append([]byte(nil), v...)
	return nil
}
func (m *inPlaceState) Recall(k []byte) (any, bool) { v, ok := m.kept[string(k)]; return v, ok }
func (m *inPlaceState) Keep(k []byte, v any)        { m.kept[string(k)] = v }

// A pewma() rule that does not fire allocates nothing per event once its
// state is kept: the state key and value, the detector state and the
// result WHERE reads live in the evaluation context.
func TestPewmaEvalAllocatesNothing(t *testing.T) {
	r := mustCompile(t, "SELECT temp, pewma(temp) AS p FROM 'fleet/+/telemetry' WHERE p.anomaly")[0]
	st := &inPlaceState{vals: map[string][]byte{}, kept: map[string]any{}}
	ins := make([]*Input, 7)
	for i := range ins {
		ins[i] = &Input{Topic: "fleet/d1/telemetry", Thing: "d1", Payload: map[string]any{"temp": int64(20 + i)}}
	}
	n := 0
	var e Evaluator // Eval's pool drops contexts at random under -race
	eval := func() {
		_, fired, err := e.Eval(r, ins[n%len(ins)], st)
		n++
		if err != nil || fired {
			t.Fatalf("event %d: fired %t, err %v", n, fired, err)
		}
	}
	for range 100 {
		eval()
	}
	if a := testing.AllocsPerRun(1000, eval); a != 0 {
		t.Errorf("%.1f allocations per evaluation, want 0", a)
	}
	if _, kept := st.Recall(compile.PewmaKey(r.Name, 0, "d1")); !kept || len(st.vals) != 1 {
		t.Errorf("state: %d keys, kept %t; want the one detector kept", len(st.vals), kept)
	}
}

// topic(n) makes the level's value once per event, however many rules
// and items read it (two stateful rules evaluate their SELECT items
// before WHERE, so both read topic(2) on every event).
func TestTopicLevelMadeOncePerEvent(t *testing.T) {
	rs := mustCompile(t, `CREATE RULE a AS SELECT topic(2) AS dev, pewma(temp) AS p FROM 'fleet/+/telemetry' WHERE p.anomaly;
CREATE RULE b AS SELECT topic(2) AS dev, pewma(hum) AS p FROM 'fleet/+/telemetry' WHERE p.anomaly`)
	st := &inPlaceState{vals: map[string][]byte{}, kept: map[string]any{}}
	payloads := make([]map[string]any, 7)
	for i := range payloads {
		payloads[i] = map[string]any{"temp": int64(20 + i), "hum": int64(40 + i)}
	}
	in := &Input{}
	n := 0
	var e Evaluator // Eval's pool drops contexts at random under -race
	event := func() {
		*in = Input{Topic: "fleet/d1/telemetry", Thing: "d1", Payload: payloads[n%len(payloads)]}
		n++
		for _, r := range rs {
			if _, fired, err := e.Eval(r, in, st); err != nil || fired {
				t.Fatalf("event %d, rule %s: fired %t, err %v", n, r.Name, fired, err)
			}
		}
	}
	for range 100 {
		event()
	}
	if a := testing.AllocsPerRun(1000, event); a != 1 {
		t.Errorf("%.1f allocations per event, want 1 (topic(2)'s value)", a)
	}
	// Another topic on the same Input gives its own level.
	in.Topic = "fleet/d2/telemetry"
	out, fired, err := mustCompile(t, "SELECT topic(2) AS dev FROM 'fleet/+/telemetry'")[0].Eval(in, st)
	if err != nil || !fired || out.(map[string]any)["dev"] != "d2" {
		t.Errorf("after the topic changed: %v, fired %t, err %v; want dev d2", out, fired, err)
	}
}

// One Evaluator evaluating rules of every shape in turn (stateful call
// sites of different rules share its context's Stash) gives what each
// rule's Eval gives.
func TestEvaluatorEqualsEval(t *testing.T) {
	rs := mustCompile(t, `CREATE RULE two AS SELECT pewma(temp) AS a, pewma(hum, 0.9) AS b, topic(2) AS dev FROM 'f/+/t' WHERE a.anomaly OR b.z > 1 OR a.t = 40;
CREATE RULE plain AS SELECT mod(abs(temp), 7) AS m, concat(topic(2), '-', hum) AS k FROM 'f/+/t' WHERE startswith(topic(2), 'd');
CREATE RULE value AS SELECT VALUE pewma(hum) FROM 'f/+/t';
CREATE RULE one AS SELECT temp, pewma(temp * 2) AS p FROM 'f/+/t' WHERE p.mean > 0`)
	key := mustCompile(t, "SELECT count(*) AS n FROM 'f/+/t' GROUP BY TUMBLE(1 MINUTE), concat(topic(2), '/', hum)")[0].Keys[0]
	pooled, own := memState{}, memState{}
	var ev Evaluator
	fired := 0
	for i := range 300 {
		in := &Input{Topic: fmt.Sprintf("f/d%d/t", i%3), Thing: fmt.Sprintf("d%d", i%3),
			Payload: map[string]any{"temp": int64(20 + i%7 + i/250*40), "hum": int64(40 + i%11)}}
		for _, r := range rs {
			want, wantFired, wantErr := r.Eval(in, pooled)
			got, gotFired, gotErr := ev.Eval(r, in, own)
			if !reflect.DeepEqual(got, want) || gotFired != wantFired || !reflect.DeepEqual(gotErr, wantErr) {
				t.Fatalf("event %d, rule %s: Evaluator %v %t %v; Eval %v %t %v", i, r.Name, got, gotFired, gotErr, want, wantFired, wantErr)
			}
			if wantFired {
				fired++
			}
		}
		want, _ := key.Eval(in, nil)
		if got, _ := ev.EvalProgram(key, in, nil); got != want {
			t.Fatalf("event %d: key %v, want %v", i, got, want)
		}
	}
	if fired < 600 || !reflect.DeepEqual(own, pooled) {
		t.Errorf("%d outputs; states equal %t", fired, reflect.DeepEqual(own, pooled))
	}
}
