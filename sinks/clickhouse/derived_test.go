package clickhouse

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestSinkDerivedTopics sinks the shadow changelog, anomalies, aggregates
// and actions, then answers the smart-fridge fleet question from shadows:
// which fridges currently report their door open.
func TestSinkDerivedTopics(t *testing.T) {
	ctx := context.Background()
	conn, dsn := freshDB(t)
	c := newCluster(t, 2)
	shadow := func(thing string, version int, door string, ts int64) *kgo.Record {
		return &kgo.Record{Topic: "iotpipe.shadows", Key: []byte(thing), Value: fmt.Appendf(nil,
			`{"thing":%q,"shadow":"","state":{"reported":{"door":%q,"temp":4}},"metadata":{"reported":{"door":{"timestamp":%d}}},"version":%d,"timestamp":%d,"deleted":false}`,
			thing, door, ts, version, ts)}
	}
	deleted := func(thing string, version int, ts int64) *kgo.Record { // a delete keeps the version
		return &kgo.Record{Topic: "iotpipe.shadows", Key: []byte(thing), Value: fmt.Appendf(nil,
			`{"thing":%q,"shadow":"","version":%d,"timestamp":%d,"deleted":true}`, thing, version, ts)}
	}
	ts := time.Now().Unix()
	dayAgo := ts - 86400
	recs := []*kgo.Record{
		shadow("fridge-1", 1, "closed", ts), shadow("fridge-1", 2, "DoorOpened", ts+1),
		shadow("fridge-2", 1, "DoorOpened", ts), shadow("fridge-2", 2, "closed", ts+2),
		shadow("fridge-3", 1, "DoorOpened", ts),
		shadow("fridge-3", 1, "DoorOpened", ts),                                          // the same change again (compaction replay)
		{Topic: "iotpipe.shadows", Key: []byte("fridge-4")},                              // tombstone
		shadow("fridge-5", 1, "DoorOpened", dayAgo), shadow("fridge-5", 2, "closed", ts), // versions on two days
		shadow("fridge-6", 1, "DoorOpened", ts), deleted("fridge-6", 1, ts+1), // deleted with its door open
		shadow("fridge-7", 1, "closed", dayAgo), deleted("fridge-7", 1, dayAgo+1), shadow("fridge-7", 2, "DoorOpened", ts), // deleted, then created again
		{Topic: "iotpipe.anomalies", Key: []byte("fridge-1"), Value: fmt.Appendf(nil, `{"thing":"fridge-1","rule":"temp","metric":"temp","value":14.5,"score":5.2,"time":%d}`, ts*1000)},
		{Topic: "iotpipe.aggregates", Key: []byte("fridge-1"), Value: fmt.Appendf(nil, `{"thing":"fridge-1","rule":"avg5m","start":%d,"end":%d,"values":{"avg":4.2,"max":6}}`, ts*1000, ts*1000+300000)},
		{Topic: "iotpipe.actions", Key: []byte("0/1/r/0"), Value: fmt.Appendf(nil, `{"key":"0/1/r/0","rule":"r","type":"clickhouse","payload":{"door":"DoorOpened","n":2},"thing":"fridge-1","fired_at":%d}`, ts*1000)},
		{Topic: "iotpipe.actions", Key: []byte("0/1/w/0"), Value: []byte(`{"key":"0/1/w/0","rule":"w","type":"webhook","payload":{}}`)},
	}
	if err := c.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	m := &countingMetrics{}
	s := startSink(t, c, dsn, "g", m)
	waitFor(t, "derived rows", 30*time.Second, func() bool { return m.inserted.Load() >= 16 })
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}

	open := column(t, conn, `
		SELECT thing FROM shadows FINAL
		GROUP BY thing
		HAVING argMax(JSONExtractString(state, 'reported', 'door'), version) = 'DoorOpened'
		ORDER BY thing`)
	if !slices.Equal(open, []string{"fridge-1", "fridge-3", "fridge-6", "fridge-7"}) {
		t.Errorf("fridges whose last change reports DoorOpened = %v, want [fridge-1 fridge-3 fridge-6 fridge-7] (fridge-6 is deleted, but shadows keeps its changes)", open)
	}
	var changes uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM shadows FINAL").Scan(&changes); err != nil || changes != 12 {
		t.Errorf("shadow changes = %d (%v), want 12 (one per accepted change)", changes, err)
	}

	// The fleet question on the current state: one row per live shadow.
	open = column(t, conn, `SELECT thing FROM shadows_current WHERE JSONExtractString(state, 'reported', 'door') = 'DoorOpened' ORDER BY thing`)
	if !slices.Equal(open, []string{"fridge-1", "fridge-3", "fridge-7"}) {
		t.Errorf("shadows_current: fridges reporting DoorOpened = %v, want [fridge-1 fridge-3 fridge-7]", open)
	}
	var live, versions uint64
	if err := conn.QueryRow(ctx, "SELECT count(), sum(version) FROM shadows_current").Scan(&live, &versions); err != nil || live != 5 || versions != 9 {
		t.Errorf("shadows_current holds %d shadows with versions summing to %d (%v); want 5 (fridge-1, 2, 3, 5 and 7; 6 is deleted) and 9", live, versions, err)
	}

	checks := []struct {
		query string
		want  string
	}{
		{"SELECT concat(rule, ' ', metric, ' ', toString(value), ' ', toString(score)) FROM anomalies", "temp temp 14.5 5.2"},
		{"SELECT concat(rule, ' ', toString(`values`['avg']), ' ', toString(dateDiff('second', window_start, window_end))) FROM aggregates", "avg5m 4.2 300"},
		{"SELECT concat(rule, ' ', key, ' ', payload, ' ', toString(metrics['n'])) FROM rule_outputs", `r 0/1/r/0 {"door":"DoorOpened","n":2} 2`},
	}
	for _, ck := range checks {
		var got string
		if err := conn.QueryRow(ctx, ck.query).Scan(&got); err != nil {
			t.Fatalf("%s: %v", ck.query, err)
		}
		if got != ck.want {
			t.Errorf("%s = %q, want %q", ck.query, got, ck.want)
		}
	}
	if n, _ := counts(t, conn, "rule_outputs"); n != 1 {
		t.Errorf("rule_outputs rows = %d, want 1 (webhook actions are not stored)", n)
	}
}

// column returns the first column of query's rows, as strings.
func column(t *testing.T, conn driver.Conn, query string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSinkDerivedSourceIDs produces every derived record twice, at two
// offsets with the same iot.src header (a processor that produced them
// again after a crash): each becomes one row, also when the copy arrives
// after the sink restarted, and a new record still arrives.
func TestSinkDerivedSourceIDs(t *testing.T) {
	ctx := context.Background()
	conn, dsn := freshDB(t)
	c := newCluster(t, 2)
	ts := time.Now().UnixMilli()
	derived := func(n int) []*kgo.Record {
		src := func(i int) []kgo.RecordHeader {
			return []kgo.RecordHeader{{Key: "iot.src", Value: fmt.Appendf(nil, "%d/%d/rules/%d", n%2, 100+n, i)}}
		}
		thing := fmt.Sprintf("fridge-%d", n)
		return []*kgo.Record{
			{Topic: "iotpipe.anomalies", Key: []byte(thing), Headers: src(0), Value: fmt.Appendf(nil,
				`{"thing":%q,"rule":"temp","metric":"temp","value":%d,"score":5,"time":%d}`, thing, n, ts)},
			{Topic: "iotpipe.aggregates", Key: []byte(thing), Headers: src(1), Value: fmt.Appendf(nil,
				`{"thing":%q,"rule":"avg5m","start":%d,"end":%d,"values":{"avg":%d}}`, thing, ts, ts+300000, n)},
			{Topic: "iotpipe.actions", Key: fmt.Appendf(nil, "%d/%d/r/0", n%2, 100+n), Headers: src(2), Value: fmt.Appendf(nil,
				`{"key":"%d/%d/r/0","rule":"r","type":"clickhouse","params":{"table":"rule_outputs"},"payload":{"n":%d},"thing":%q,"fired_at":%d}`, n%2, 100+n, n, thing, ts)},
		}
	}
	produce := func(ns ...int) {
		t.Helper()
		var rs []*kgo.Record
		for _, n := range ns {
			rs = append(rs, derived(n)...)
		}
		if err := c.prod.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	rows := func() map[string]uint64 {
		t.Helper()
		got := map[string]uint64{}
		for _, table := range []string{"anomalies", "aggregates", "rule_outputs"} {
			var n uint64
			if err := conn.QueryRow(ctx, "SELECT count() FROM "+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			got[table] = n
		}
		return got
	}
	want := func(n uint64) map[string]uint64 {
		return map[string]uint64{"anomalies": n, "aggregates": n, "rule_outputs": n}
	}

	produce(1, 2, 1, 3, 2) // 1 and 2 twice
	m := &countingMetrics{}
	s := startSink(t, c, dsn, "g", m)
	waitFor(t, "every record read", 30*time.Second, func() bool { return m.inserted.Load()+m.skipped.Load() >= 15 })
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := rows(); !maps.Equal(got, want(3)) {
		t.Errorf("rows %v, want %v (each source id once)", got, want(3))
	}

	// Copies produced after a restart, and one new record.
	produce(3, 1, 4)
	m2 := &countingMetrics{}
	s2 := startSink(t, c, dsn, "g", m2)
	defer s2.Stop()
	waitFor(t, "the new records read", 30*time.Second, func() bool { return m2.inserted.Load()+m2.skipped.Load() >= 9 })
	if got := rows(); !maps.Equal(got, want(4)) {
		t.Errorf("after the restart: rows %v, want %v", got, want(4))
	}
	var dupes uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM (SELECT src FROM rule_outputs GROUP BY src HAVING count() > 1)").Scan(&dupes); err != nil || dupes != 0 {
		t.Errorf("rule_outputs has %d source ids more than once (%v)", dupes, err)
	}
}

// TestSinkRuleTable stores the firings of clickhouse(table => ...,
// columns => ...) in the table the rule names, created on first use with
// its typed columns; a table or columns that cannot be go to the DLQ
// with the reason, and the other firings are stored.
func TestSinkRuleTable(t *testing.T) {
	ctx := context.Background()
	conn, dsn := freshDB(t)
	c := newCluster(t, 1)
	ts := time.Now().UnixMilli()
	action := func(n int, params, payload string) *kgo.Record {
		key := fmt.Sprintf("0/%d/too_bright/4", n)
		return &kgo.Record{Topic: "iotpipe.actions", Key: []byte(key), Value: fmt.Appendf(nil,
			`{"key":%q,"rule":"too_bright","type":"clickhouse","params":%s,"payload":%s,"thing":"gh-%d","fired_at":%d}`, key, params, payload, n, ts)}
	}
	typed := `{"table":"lux_alerts","columns":{"lux":"Float64","house":"String","shaded":"Bool"}}`
	recs := []*kgo.Record{
		action(1, typed, `{"lux":40000,"house":"h7","shaded":true}`),
		action(2, typed, `{"lux":"bright","other":1}`),                             // lux does not convert, house missing
		action(3, `{"table":"lux_alerts"}`, `{"lux":35001}`),                       // the same table, no typed columns
		action(4, `{}`, `{"lux":1}`),                                               // no table: rule_outputs
		action(5, `{"table":"telemetry"}`, `{"lux":2}`),                            // iotpipe's own table
		action(6, `{"table":"x; DROP TABLE telemetry"}`, `{"lux":3}`),              // not a name
		action(7, `{"table":"lux_alerts","columns":{"lux":"Array(String)"}}`, `1`), // a type not offered
		action(8, typed, `{"lux":45000,"house":"h8","shaded":false}`),
		action(9, `{"table":"operators_own"}`, `{"lux":4}`),                          // a table of other columns
		action(10, `{"table":"order","columns":{"select":"Int64"}}`, `{"select":5}`), // names that are SQL keywords
	}
	if err := conn.Exec(ctx, "CREATE TABLE operators_own (a UInt8) ENGINE = Memory"); err != nil {
		t.Fatal(err)
	}
	if err := c.prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	m := &countingMetrics{}
	s := startSink(t, c, dsn, "g", m)
	waitFor(t, "rows and DLQ records", 30*time.Second, func() bool { return m.inserted.Load() >= 6 && m.dlq.Load() >= 4 })
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	got := column(t, conn, `SELECT concat(thing, ' ', ifNull(toString(lux), 'NULL'), ' ', ifNull(house, 'NULL'), ' ', ifNull(toString(shaded), 'NULL'), ' ', src) FROM lux_alerts ORDER BY thing`)
	want := []string{"gh-1 40000 h7 true @0/0", "gh-2 NULL NULL NULL @0/1", "gh-3 35001 NULL NULL @0/2", "gh-8 45000 h8 false @0/7"}
	if !slices.Equal(got, want) {
		t.Errorf("lux_alerts rows:\n%q\nwant\n%q", got, want)
	}
	if got := column(t, conn, `SELECT thing FROM rule_outputs`); !slices.Equal(got, []string{"gh-4"}) {
		t.Errorf("rule_outputs rows %q, want [gh-4]", got)
	}
	if got := column(t, conn, "SELECT concat(thing, ' ', toString(`select`)) FROM `order`"); !slices.Equal(got, []string{"gh-10 5"}) {
		t.Errorf("table order: %q, want [gh-10 5]", got)
	}
	if n, _ := counts(t, conn, "telemetry"); n != 0 {
		t.Errorf("telemetry has %d rows", n)
	}
	if n := m.dlq.Load(); n != 4 {
		t.Errorf("%d firings dead-lettered, want 4", n)
	}
}
