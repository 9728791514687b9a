package clickhouse

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	segjson "github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
	"github.com/iotpipe/iotpipe/schemas/payload"
)

func TestFlatten(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]float64
	}{
		{`{"a":{"b":1},"c":[2,3.5],"s":"x","t":true,"n":null}`, map[string]float64{"a.b": 1, "c.0": 2, "c.1": 3.5}},
		{`42`, map[string]float64{"value": 42}},
		{`"text"`, nil},
		{`{}`, nil},
		{`{"deep":{"er":{"est":[{"v":-1e300}]}}}`, map[string]float64{"deep.er.est.0.v": -1e300}},
		{`{"a":1,"b":{"a":2}}`, map[string]float64{"a": 1, "b.a": 2}},
	}
	for _, tt := range tests {
		v, err := payload.Decode([]byte(tt.in))
		if err != nil {
			t.Fatal(err)
		}
		if got := Flatten(v, nil); !cmp.Equal(got, tt.want) {
			t.Errorf("Flatten(%s) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestEpochTime(t *testing.T) {
	want := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   any
		want time.Time
		ok   bool
	}{
		{want.Unix(), want, true},
		{want.UnixMilli(), want, true},
		{want.UnixMicro(), want, true},
		{want.UnixNano(), want, true},
		{float64(want.Unix()) + 0.5, want.Add(500 * time.Millisecond), true},
		{"2026-11-22T12:00:00Z", want, true},
		{"yesterday", time.Time{}, false},
		{nil, time.Time{}, false},
		{true, time.Time{}, false},
		{math.NaN(), time.Time{}, false},
		{float64(1e300), time.Time{}, false},
		{int64(-99999999999), time.Time{}, false}, // before 1900 in ms
	}
	for _, tt := range tests {
		got, ok := epochTime(tt.in)
		if ok != tt.ok || (ok && !got.Equal(tt.want)) {
			t.Errorf("epochTime(%v) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestDecode(t *testing.T) {
	d := decoder{topics: schemas.DefaultTopics(), maxPayload: 100}
	rx := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	ts := kgo.Record{Partition: 2, Offset: 7, Timestamp: rx}
	with := func(topic, key, value string, headers ...kgo.RecordHeader) *kgo.Record {
		r := ts
		r.Topic, r.Key, r.Value, r.Headers = topic, []byte(key), []byte(value), headers
		if value == "<nil>" {
			r.Value = nil
		}
		return &r
	}
	pub := schemas.Envelope{Type: schemas.EventPublish, Topic: "dt/f1", ClientID: "f1", Principal: "cert", QoS: 1, Retain: true, ReceivedAt: rx.UnixNano()}
	conn := schemas.Envelope{Type: schemas.EventConnected, ClientID: "f1", ReceivedAt: rx.UnixNano()}
	tests := []struct {
		name    string
		rec     *kgo.Record
		want    row
		wantErr string
	}{
		{"telemetry", with("iotpipe.events", "f1", `{"temp":4.5,"timestamp":1763805600}`, pub.Headers()...),
			&telemetryRow{thing: "f1", topic: "dt/f1", clientID: "f1", principal: "cert", qos: 1, retain: true, receivedAt: rx,
				eventTime: time.Unix(1763805600, 0).UTC(), payload: `{"temp":4.5,"timestamp":1763805600}`,
				metrics: map[string]float64{"temp": 4.5, "timestamp": 1763805600}, partition: 2, offset: 7}, ""},
		{"not json", with("iotpipe.events", "f1", `door!`, pub.Headers()...),
			&telemetryRow{thing: "f1", topic: "dt/f1", clientID: "f1", principal: "cert", qos: 1, retain: true, receivedAt: rx,
				eventTime: rx, payload: `door!`, partition: 2, offset: 7}, ""},
		{"thing from client id", with("iotpipe.events", "", `1`, pub.Headers()...),
			&telemetryRow{thing: "f1", topic: "dt/f1", clientID: "f1", principal: "cert", qos: 1, retain: true, receivedAt: rx,
				eventTime: rx, payload: `1`, metrics: map[string]float64{"value": 1}, partition: 2, offset: 7}, ""},
		{"presence", with("iotpipe.events", "f1", ``, conn.Headers()...),
			&presenceRow{thing: "f1", event: "connected", clientID: "f1", receivedAt: rx, partition: 2, offset: 7}, ""},
		{"no envelope", with("iotpipe.events", "f1", `{}`), nil, "no version header"},
		{"too large", with("iotpipe.events", "f1", string(make([]byte, 101)), pub.Headers()...), nil, "exceeds the 100-byte limit"},
		{"shadow", with("iotpipe.shadows", "f1", `{"thing":"f1","shadow":"","state":{"reported":{"door":"open"}},"metadata":{},"version":3,"timestamp":1763805600,"deleted":false}`),
			&shadowRow{thing: "f1", version: 3, updatedAt: time.Unix(1763805600, 0).UTC(), state: `{"reported":{"door":"open"}}`, metadata: `{}`, partition: 2, offset: 7}, ""},
		{"shadow tombstone", with("iotpipe.shadows", "f1", "<nil>"), nil, ""},
		{"shadow bad", with("iotpipe.shadows", "f1", `[1]`), nil, "not JSON"},
		{"shadow no thing", with("iotpipe.shadows", "f1", `{"version":1,"timestamp":1}`), nil, "no thing"},
		{"anomaly", with("iotpipe.anomalies", "f1", `{"rule":"hot","metric":"temp","value":9,"score":4.2,"time":1763805600000}`),
			&anomalyRow{thing: "f1", detectedAt: time.UnixMilli(1763805600000).UTC(), rule: "hot", metric: "temp", value: 9, score: 4.2,
				payload: `{"rule":"hot","metric":"temp","value":9,"score":4.2,"time":1763805600000}`, src: "@2/7", partition: 2, offset: 7}, ""},
		{"aggregate", with("iotpipe.aggregates", "f1", `{"thing":"f2","rule":"avg","start":1000,"end":61000,"values":{"avg":2.5,"count":4}}`),
			&aggregateRow{thing: "f2", rule: "avg", windowStart: time.Unix(1000, 0).UTC(), windowEnd: time.Unix(61000, 0).UTC(),
				values: map[string]float64{"avg": 2.5, "count": 4}, payload: `{"thing":"f2","rule":"avg","start":1000,"end":61000,"values":{"avg":2.5,"count":4}}`, src: "@2/7", partition: 2, offset: 7}, ""},
		{"aggregate not object", with("iotpipe.aggregates", "f1", `3`), nil, "not a JSON object"},
		{"action for clickhouse", with("iotpipe.actions", "k", `{"key":"0/1/r/0","rule":"r","type":"clickhouse","payload":{"t":1.5},"thing":"f1","fired_at":1763805600000}`,
			kgo.RecordHeader{Key: "iot.src", Value: []byte("0/1/rules/3")}),
			&ruleOutputRow{table: ddl.RuleTable{Name: "rule_outputs"}, thing: "f1", firedAt: time.UnixMilli(1763805600000).UTC(), rule: "r", key: "0/1/r/0", payload: `{"t":1.5}`,
				metrics: map[string]float64{"t": 1.5}, src: "0/1/rules/3", partition: 2, offset: 7}, ""},
		{"action for a rule's table", with("iotpipe.actions", "k", `{"key":"0/1/r/0","rule":"r","type":"clickhouse","params":{"table":"lux","columns":{"v":"Float64"}},"payload":{"v":2},"thing":"f1","fired_at":1763805600000}`),
			&ruleOutputRow{table: ddl.RuleTable{Name: "lux", Columns: []ddl.RuleColumn{{Name: "v", Type: "Float64"}}}, thing: "f1", firedAt: time.UnixMilli(1763805600000).UTC(),
				rule: "r", key: "0/1/r/0", payload: `{"v":2}`, metrics: map[string]float64{"v": 2}, src: "@2/7", partition: 2, offset: 7}, ""},
		{"action for iotpipe's table", with("iotpipe.actions", "k", `{"type":"clickhouse","params":{"table":"shadows"},"payload":1}`), nil, "table shadows is iotpipe's own"},
		{"action with columns not an object", with("iotpipe.actions", "k", `{"type":"clickhouse","params":{"table":"t","columns":["a"]},"payload":1}`), nil, "columns an object"},
		{"action for a webhook", with("iotpipe.actions", "k", `{"type":"webhook"}`), nil, ""},
		{"other topic", with("elsewhere", "k", `x`), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := d.decode(tt.rec)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, errUnstorable) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want unstorable containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(telemetryRow{}, presenceRow{}, shadowRow{}, anomalyRow{}, aggregateRow{}, ruleOutputRow{})); diff != "" {
				t.Errorf("row mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGroupToken(t *testing.T) {
	a := &group{key: groupKey{"telemetry", "iotpipe.events", 3, 20000}, first: 100, last: 199}
	b := &group{key: groupKey{"telemetry", "iotpipe.events", 3, 20000}, first: 100, last: 199}
	c := &group{key: groupKey{"presence", "iotpipe.events", 3, 20000}, first: 100, last: 199}
	if a.token() != b.token() || a.token() == c.token() {
		t.Fatalf("tokens: %q %q %q", a.token(), b.token(), c.token())
	}
	if want := "iotpipe/telemetry/iotpipe.events/3/20000/100-199"; a.token() != want {
		t.Errorf("token = %q, want %q", a.token(), want)
	}

	// Derived tables: the token is made of the rows' source ids, not of
	// the offsets they were read at.
	derived := func(first int64, ids ...string) *group {
		g := &group{key: groupKey{"anomalies", "iotpipe.anomalies", 1, 20000}, first: first, last: first + int64(len(ids)) - 1, cols: newColumns("anomalies")}
		for i, id := range ids {
			g.cols.add(&anomalyRow{thing: "f", src: id, offset: first + int64(i)})
		}
		return g
	}
	same, moved, other := derived(10, "0/5/rules/0", "0/6/rules/0"), derived(90, "0/5/rules/0", "0/6/rules/0"), derived(10, "0/5/rules/0", "0/7/rules/0")
	if same.token() != moved.token() || same.token() == other.token() {
		t.Errorf("source id tokens: same rows at other offsets %q vs %q; other rows %q", same.token(), moved.token(), other.token())
	}
	if !strings.HasPrefix(same.token(), "iotpipe/anomalies/iotpipe.anomalies/1/20000/src-") {
		t.Errorf("token = %q", same.token())
	}
}

func TestDayOf(t *testing.T) {
	tests := []struct {
		t    time.Time
		want int64
	}{
		{time.Unix(0, 0), 0},
		{time.Unix(86399, 0), 0},
		{time.Unix(86400, 0), 1},
		{time.Unix(-1, 0), -1},
		{time.Unix(-86400, 0), -1},
		{time.Unix(-86401, 0), -2},
	}
	for _, tt := range tests {
		if got := dayOf(tt.t); got != tt.want {
			t.Errorf("dayOf(%v) = %d, want %d", tt.t, got, tt.want)
		}
	}
}

func FuzzDecodeEvent(f *testing.F) {
	env := schemas.Envelope{Type: schemas.EventPublish, ReceivedAt: time.Now().UnixNano()}
	f.Add([]byte(`{"a":{"b":[1,2,{"c":3}]},"timestamp":1700000000}`), "iotpipe.events")
	f.Add([]byte(`not json`), "iotpipe.events")
	f.Add([]byte(`{"thing":"x","version":1,"timestamp":1}`), "iotpipe.shadows")
	f.Add([]byte(`{"type":"clickhouse","payload":[1,"x"]}`), "iotpipe.actions")
	f.Add([]byte(`{"start":"2026-01-01T00:00:00Z"}`), "iotpipe.aggregates")
	d := decoder{topics: schemas.DefaultTopics(), maxPayload: 1 << 20}
	f.Fuzz(func(t *testing.T, value []byte, topic string) {
		r := &kgo.Record{Topic: topic, Key: []byte("k"), Value: value, Headers: env.Headers(), Timestamp: time.Now()}
		rw, err := d.decode(r)
		if err != nil && !errors.Is(err, errUnstorable) {
			t.Fatalf("error not marked unstorable: %v", err)
		}
		if rw != nil {
			if !timeInRange(rw.time()) {
				t.Fatalf("row time %v outside DateTime64 range", rw.time())
			}
			newColumns(rw.tableName()).add(rw)
		}
	})
}

// lenientDecode is schemas/payload's Decode, except that a number out
// of float64 range is kept as its text (payload.Decode refuses the whole
// payload; telemetry keeps the payload's other metrics).
func lenientDecode(data []byte) (any, error) {
	v, err := payload.Decode(data)
	if err == nil || !strings.Contains(err.Error(), "out of range") {
		return v, err
	}
	var raw any
	dec := segjson.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	var fix func(any) any
	fix = func(x any) any {
		switch t := x.(type) {
		case map[string]any:
			for k, y := range t {
				t[k] = fix(y)
			}
		case []any:
			for i, y := range t {
				t[i] = fix(y)
			}
		case segjson.Number:
			return payload.Number(string(t))
		}
		return x
	}
	return fix(raw), nil
}

// FuzzFlattenJSON checks the token walk against the reference: decode
// with schemas/payload (numbers out of range kept as text), then Flatten.
func FuzzFlattenJSON(f *testing.F) {
	for _, s := range []string{
		`{"a":{"b":1},"c":[2,3.5,{"d":[4]}],"s":"x","t":true,"n":null}`, `42`, `"text"`, `{}`, `[]`,
		`{"timestamp":1700000000,"x":-0.5e3}`, `{"timestamp":"2026-01-01T00:00:00Z"}`, `{"a":1,"a":2}`,
		`[[1,2],[3,[4,{"k":5}]]]`, ` {"a" : [ ] , "b":{}} `, `{"a":1}{`, `nul`, `{"a\"b":1,"\u00e9":2}`,
		`{"big":123456789012345678901234567890}`, `{"":{"":1}}`,
	} {
		f.Add([]byte(s))
	}
	f.Add([]byte(`{"a":1,"huge":7e3000,"b":[2]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ts, ok := flattenJSON(data)
		v, err := lenientDecode(data)
		if ok != (err == nil) {
			t.Fatalf("flattenJSON ok=%v, payload.Decode err=%v", ok, err)
		}
		if !ok {
			return
		}
		want := Flatten(v, nil)
		if !cmp.Equal(got, want, cmp.Comparer(func(a, b float64) bool { return a == b || (a != a && b != b) })) {
			t.Fatalf("flattenJSON(%q) = %v, want %v", data, got, want)
		}
		var wantTS any
		if m, isObj := v.(map[string]any); isObj {
			switch x := m["timestamp"].(type) {
			case int64, float64, string:
				wantTS = x
			}
		}
		if !cmp.Equal(ts, wantTS) {
			t.Fatalf("timestamp of %q = %#v, want %#v", data, ts, wantTS)
		}
	})
}

// TestFlattenCollidingNames checks that two paths that flatten to one
// name give one metric, as Flatten's map does.
func TestFlattenCollidingNames(t *testing.T) {
	// Which of the two values wins is unspecified (Flatten ranges over
	// a map); that there is one metric is not.
	for _, in := range []string{`{"a.b":1,"a":{"b":2}}`, `{"":{"a":1},"a":2}`, `{"x.y":{"z":1},"x":{"y.z":2}}`} {
		var (
			sc   scratch
			list metricList
		)
		if _, ok := sc.flatten([]byte(in), &list); !ok {
			t.Fatalf("flatten(%s) not ok", in)
		}
		if list.len() != 1 {
			t.Errorf("flatten(%s) gave %d metrics, want 1", in, list.len())
		}
	}
}
