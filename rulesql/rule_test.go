package rulesql

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustCompile(t *testing.T, src string, opts ...Option) []*Rule {
	t.Helper()
	rules, err := Compile(src, opts...)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return rules
}

func TestCompileNames(t *testing.T) {
	rules := mustCompile(t, "SELECT a FROM 'x'", WithFile("dir/lux_alert.sql"))
	if rules[0].Name != "lux_alert" || rules[0].File != "dir/lux_alert.sql" || rules[0].Topic != "x" {
		t.Errorf("rule = %+v", rules[0])
	}
	rules = mustCompile(t, "SELECT a FROM 'x'; CREATE RULE named AS SELECT b FROM 'y'; SELECT c FROM 'z'", WithFile("f.sql"))
	if got := []string{rules[0].Name, rules[1].Name, rules[2].Name}; !reflect.DeepEqual(got, []string{"f_1", "named", "f_3"}) {
		t.Errorf("names = %v", got)
	}
	if rules := mustCompile(t, "SELECT a FROM 'x'", WithFile("f.sql"), WithName("given")); rules[0].Name != "given" {
		t.Errorf("WithName: %s", rules[0].Name)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct{ src, want string }{
		{"SELECT a FROM 'x' WHERE", "r.sql:1:24: unexpected end of input, expected an expression"},
		{"CREATE RULE a AS SELECT nope() FROM 'x';\nCREATE RULE b AS SELECT y FROM 'a/#/b'",
			"r.sql:1:25: unknown function nope\nr.sql:2:32: bad topic filter 'a/#/b': '#' must be the whole last level"},
		{"CREATE RULE a AS SELECT 1 FROM 'x'; CREATE RULE a AS SELECT 2 FROM 'y'", "r.sql:1:37: rule a is declared twice"},
		{"SELECT a FROM 'x' THEN kafka(topic => 'a-${nope(}')", "r.sql:1:42: in template ${nope(}: 1:6: unexpected end of input, expected an expression"},
		{"SELECT a FROM 'x' THEN kafka(topic => 'a-${unknown_fn(1)}')", "r.sql:1:42: in template ${unknown_fn(1)}: 1:1: unknown function unknown_fn"},
		{"SELECT a FROM 'x' THEN kafka(topic => 'a-${x')", "r.sql:1:42: unterminated ${ in template"},
		{"SELECT pewma(a, 2) FROM 'x'", "r.sql:1:8: pewma: alpha0 = 2: must be strictly between 0 and 1"},
	}
	for _, tt := range tests {
		_, err := Compile(tt.src, WithFile("r.sql"))
		var es Errors
		if !errors.As(err, &es) {
			t.Errorf("Compile(%q) error = %v, want Errors", tt.src, err)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("Compile(%q) error:\n%s\nwant:\n%s", tt.src, err, tt.want)
		}
	}
}

func TestEvalUndefined(t *testing.T) {
	rules := mustCompile(t, `CREATE RULE v AS SELECT VALUE missing FROM 't';
CREATE RULE w AS SELECT a FROM 't' WHERE missing = 1;
CREATE RULE o AS SELECT a, missing FROM 't'`)
	in := &Input{Topic: "t", Payload: map[string]any{"a": int64(1)}}
	out, fired, err := rules[0].Eval(in, nil)
	if err != nil || !fired || out != Undefined || !IsUndefined(out) {
		t.Errorf("SELECT VALUE missing = %v, %v, %v; want Undefined, fired", out, fired, err)
	}
	if _, fired, _ := rules[1].Eval(in, nil); fired {
		t.Error("WHERE Undefined fired")
	}
	out, _, _ = rules[2].Eval(in, nil)
	if !reflect.DeepEqual(out, map[string]any{"a": int64(1)}) {
		t.Errorf("output = %#v", out)
	}
}

func TestSelectStarCopies(t *testing.T) {
	rules := mustCompile(t, "SELECT * FROM 't'")
	p := map[string]any{"a": int64(1)}
	out, _, _ := rules[0].Eval(&Input{Topic: "t", Payload: p}, nil)
	out.(map[string]any)["b"] = 2
	if len(p) != 1 {
		t.Error("changing SELECT * output changed the shared payload")
	}
}

type failingShadow struct{}

func (failingShadow) ThingShadow(string, string) (any, bool, error) {
	return nil, false, errors.New("store down")
}

func TestShadowError(t *testing.T) {
	rules := mustCompile(t, "SELECT get_thing_shadow(clientid()) AS s, a FROM 't'")
	out, fired, err := rules[0].Eval(&Input{Topic: "t", ClientID: "c1", Payload: map[string]any{"a": true}, Shadow: failingShadow{}}, nil)
	if err == nil || !strings.Contains(err.Error(), "store down") || !fired {
		t.Errorf("err = %v, fired %v", err, fired)
	}
	if !reflect.DeepEqual(out, map[string]any{"a": true}) {
		t.Errorf("out = %v", out)
	}
	out, _, err = rules[0].Eval(&Input{Topic: "t", Payload: map[string]any{}}, nil)
	if err != nil || len(out.(map[string]any)) != 0 {
		t.Errorf("no reader: %v %v", out, err)
	}
}

func TestActionRender(t *testing.T) {
	rules := mustCompile(t, `CREATE RULE r AS SELECT * FROM 'greenhouse/+/lux'
THEN webhook(url => 'https://h/${topic(2)}?c=${clientid()}', headers => {'X-T': '${temp}', 'X-N': '${obj}'}, timeout => 5),
republish(topic => 'greenhouse/${topic(2)}/shade', payload => '${missing}|$${raw}')`)
	in := &Input{Topic: "greenhouse/g1/lux", ClientID: "probe", Payload: map[string]any{"temp": 21.5, "obj": map[string]any{"k": "v"}}}
	r := rules[0]
	if len(r.Actions) != 2 || r.Actions[0].Type != "webhook" {
		t.Fatalf("actions = %+v", r.Actions)
	}
	got := r.Actions[0].Render(in)
	want := map[string]any{"url": "https://h/g1?c=probe", "headers": map[string]any{"X-T": "21.5", "X-N": `{"k":"v"}`}, "timeout": int64(5)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("webhook params = %#v\nwant %#v", got, want)
	}
	got = r.Actions[1].Render(in)
	if got["topic"] != "greenhouse/g1/shade" || got["payload"] != "|${raw}" {
		t.Errorf("republish params = %#v", got)
	}
	if tpl, ok := r.Actions[0].Args["url"].(*Template); !ok || tpl.Source != "https://h/${topic(2)}?c=${clientid()}" {
		t.Errorf("url template = %#v", r.Actions[0].Args["url"])
	}
}

func TestWindowRule(t *testing.T) {
	rules := mustCompile(t, `SELECT clientid() AS device, count(*) AS n, avg(t) AS mean, max(t) - min(t) AS spread,
  percentile(t, 0.9) AS p90, round(stddev(t)) AS sd
FROM 's/+' WHERE t > 0
GROUP BY HOP(INTERVAL 10 MINUTES, INTERVAL 5 MINUTES), clientid() EVENT TIME ts ALLOWED LATENESS 1 MINUTE`)
	r := rules[0]
	if r.Window == nil || r.Window.Kind != "hopping" || r.Window.Size != 10*time.Minute || r.Window.Slide != 5*time.Minute || r.Window.Lateness != time.Minute {
		t.Fatalf("window = %+v", r.Window)
	}
	var funcs []string
	for _, a := range r.Aggregates {
		funcs = append(funcs, a.Func)
	}
	if strings.Join(funcs, ",") != "count,avg,max,min,percentile,stddev" {
		t.Errorf("aggregates = %v", funcs)
	}
	if r.Aggregates[0].Arg != nil || r.Aggregates[4].Param != 0.9 {
		t.Errorf("count arg %v, percentile param %v", r.Aggregates[0].Arg, r.Aggregates[4].Param)
	}
	in := &Input{Topic: "s/1", ClientID: "dev", Payload: map[string]any{"t": 4.5, "ts": int64(1000)}}
	if v, err := r.Aggregates[1].Arg.Eval(in, nil); err != nil || v != 4.5 {
		t.Errorf("avg arg = %v, %v", v, err)
	}
	if k, _ := r.Keys[0].Eval(in, nil); k != "dev" {
		t.Errorf("key = %v", k)
	}
	if ts, _ := r.EventTime.Eval(in, nil); ts != int64(1000) {
		t.Errorf("event time = %v", ts)
	}
	if out, fired, _ := r.Eval(in, nil); !fired || !IsUndefined(out) {
		t.Errorf("Eval on a GROUP BY rule = %v, %v", out, fired)
	}
	row := r.AggregateRow(in, []any{int64(3), 5.0, 9.0, 1.0, 8.5, 2.4})
	want := map[string]any{"device": "dev", "n": int64(3), "mean": 5.0, "spread": 8.0, "p90": 8.5, "sd": int64(2)}
	if !reflect.DeepEqual(row, want) {
		t.Errorf("row = %#v\nwant %#v", row, want)
	}
}

func TestDurationRule(t *testing.T) {
	rules := mustCompile(t, "SELECT * FROM 'fridge/+' WHERE state.reported.DoorOpened = true FOR 10 MINUTES RESOLVE")
	r := rules[0]
	if r.For == nil || r.For.Duration != 10*time.Minute || !r.For.Resolve {
		t.Fatalf("for = %+v", r.For)
	}
	open := &Input{Topic: "fridge/1", Payload: map[string]any{"state": map[string]any{"reported": map[string]any{"DoorOpened": true}}}}
	closed := &Input{Topic: "fridge/1", Payload: map[string]any{"state": map[string]any{"reported": map[string]any{"DoorOpened": false}}}}
	if ok, _ := r.Condition(open, nil); !ok {
		t.Error("condition false for an open door")
	}
	if ok, _ := r.Condition(closed, nil); ok {
		t.Error("condition true for a closed door")
	}
}

func TestLoadDirDuplicateNames(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.sql"), []byte("CREATE RULE same AS SELECT 1 FROM 'x'"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.sql"), []byte("\n  CREATE RULE same AS SELECT 2 FROM 'y'"), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a rule"), 0o644)
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755) // not read: a rules directory is flat
	os.WriteFile(filepath.Join(dir, "sub", "c.sql"), []byte("CREATE RULE same AS SELECT 3 FROM 'z'"), 0o644)
	_, err := LoadDir(dir)
	want := filepath.Join(dir, "b.sql") + ":2:3: rule name same is already used at " + filepath.Join(dir, "a.sql") + ":1:1"
	if err == nil || err.Error() != want {
		t.Errorf("LoadDir error = %v\nwant %s", err, want)
	}
	os.WriteFile(filepath.Join(dir, "b.sql"), []byte("CREATE RULE other AS SELECT 2 FROM 'y/#'"), 0o644)
	set, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Rules) != 2 || set.Rule("other") == nil || names(set.Match("y/z")) != "other" {
		t.Errorf("set = %v", names(set.Rules))
	}
	// A file named twice (itself and through its directory) loads once.
	set, err = LoadFiles([]string{filepath.Join(dir, "a.sql"), filepath.Join(dir, ".", "a.sql")})
	if err != nil || len(set.Rules) != 1 {
		t.Errorf("file named twice: %v, %v", err, err)
	}
}

func TestPercentileParam(t *testing.T) {
	rules := mustCompile(t, "SELECT percentile(t, 95) AS a, percentile(t, 0.5) AS b FROM 's' GROUP BY TUMBLE(1 MINUTE)")
	if p := rules[0].Aggregates; p[0].Param != 0.95 || p[1].Param != 0.5 {
		t.Errorf("params = %v, %v", p[0].Param, p[1].Param)
	}
	if _, err := Compile("SELECT percentile(t, x) AS a FROM 's' GROUP BY TUMBLE(1 MINUTE)"); err == nil {
		t.Error("non-literal percentile accepted")
	}
}

// A WHERE that calls functions allocates nothing per event when it
// does not fire: the arguments live on the context's stack, nested
// calls above their caller's.
func TestFunctionCallsAllocateNothing(t *testing.T) {
	r := mustCompile(t, "SELECT temp FROM 'fleet/+/telemetry' WHERE startswith(status, 'err') OR isnull(hum) OR mod(abs(temp), 7) = 3")[0]
	in := &Input{Topic: "fleet/d1/telemetry", Thing: "d1", Payload: map[string]any{"temp": int64(20), "hum": int64(40), "status": "ok"}}
	var e Evaluator // Eval's pool drops contexts at random under -race
	eval := func() {
		if _, fired, err := e.Eval(r, in, nil); err != nil || fired {
			t.Fatalf("fired %t, err %v", fired, err)
		}
	}
	eval()
	if a := testing.AllocsPerRun(1000, eval); a != 0 {
		t.Errorf("%.1f allocations per evaluation, want 0", a)
	}
	in.Payload.(map[string]any)["status"] = "error"
	if _, fired, err := r.Eval(in, nil); err != nil || !fired {
		t.Errorf("status error: fired %t, err %v; want fired", fired, err)
	}
	// A fresh context: the nested call grows the stack under its
	// caller's arguments.
	r = mustCompile(t, "SELECT mod(abs(temp), 7) AS m, concat(status, '-', abs(temp)) AS s FROM 'fleet/+/telemetry' WHERE mod(abs(temp), 7) = 3")[0]
	in.Payload = map[string]any{"temp": int64(-24), "status": "ok"}
	out, fired, err := r.Eval(in, nil)
	if want := map[string]any{"m": int64(3), "s": "ok-24"}; err != nil || !fired || !reflect.DeepEqual(out, want) {
		t.Errorf("temp -24: %v, fired %t, err %v; want %v", out, fired, err, want)
	}
}
