package replay

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/sinks/clickhouse"
)

// chQuery runs query on the test's ClickHouse server and returns the
// rows as text.
func chQuery(t *testing.T, query string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := clickhouse.Open(ctx, chsrv.Get(t).DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	res, err := clickhouse.Query(ctx, conn, query, 0)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	var out []string
	for _, r := range res.Rows {
		out = append(out, strings.TrimSpace(fmt.Sprintln(r...)))
	}
	return out
}

// TestExportParquet: events and replay outputs written with --export
// read back in ClickHouse's file() (through iotpipe's embedded server)
// with every column as written.
func TestExportParquet(t *testing.T) {
	h := newHistory(t, 4)
	evs := scenario()
	evs = append(evs, ev{thing: "bin", topic: "raw/bin", payload: "\xff\x00bytes", at: 61 * time.Second})
	h.produce(evs...)
	dir := t.TempDir()

	events := filepath.Join(dir, "events.parquet")
	pe, err := CreateEventsParquet(events)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	h.each(Selection{}, func(_ context.Context, e *Event) error { n++; return pe.Write(e) }, func(context.Context) error { return pe.Close() })
	if got := chQuery(t, fmt.Sprintf("SELECT count(), countIf(type = 'connected'), countIf(payload IS NULL), min(received_at) FROM file('%s', Parquet)", events)); len(got) != 1 ||
		got[0] != fmt.Sprintf("%d 1 1 %s", n, t0.Format(time.RFC3339)) {
		t.Errorf("events in ClickHouse: %q (wrote %d)", got, n)
	}
	got := chQuery(t, fmt.Sprintf("SELECT partition, offset, thing, topic, client_id, principal, qos, retain, payload, hex(payload_bytes) FROM file('%s', Parquet) WHERE thing IN ('d1', 'bin') ORDER BY received_at", events))
	p := PartitionOf("d1", 4)
	if len(got) != 2 || !strings.HasPrefix(got[0], fmt.Sprintf("%d ", p)) || !strings.HasSuffix(got[0], `d1 door/d1/state d1 anonymous 1 false {"open":true,"n":1} 7B226F70656E223A747275652C226E223A317D`) ||
		!strings.HasSuffix(got[1], " <nil> FF006279746573") {
		t.Errorf("rows:\n%s", strings.Join(got, "\n"))
	}

	outputs := filepath.Join(dir, "outputs.parquet")
	po, err := CreateOutputsParquet(outputs)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := NewEngine(compileRules(t, scenarioRules), Options{Partitions: 4}, po.Write)
	if err != nil {
		t.Fatal(err)
	}
	h.each(Selection{}, eng.Add, func(ctx context.Context) error { return errors.Join(eng.Close(ctx), po.Close()) })
	sum := eng.Summary()
	var fired int64
	for _, r := range sum.Rules {
		fired += r.Fired
	}
	got = chQuery(t, fmt.Sprintf("SELECT count(), countIf(partition IS NULL), countIf(resolved), countIf(actions IS NOT NULL) FROM file('%s', Parquet)", outputs))
	if len(got) != 1 || !strings.HasPrefix(got[0], fmt.Sprintf("%d ", fired)) {
		t.Errorf("outputs in ClickHouse: %q, replay fired %d", got, fired)
	}
	got = chQuery(t, fmt.Sprintf("SELECT rule, source LIKE '%%/t%%', thing, JSONExtractString(output, 'door'), JSONExtractString(actions, 1, 'type'), resolved FROM file('%s', Parquet) WHERE rule = 'door' ORDER BY at", outputs))
	want := []string{"door 1 d1 d1 command false", "door 1 d2 d2 command false", "door 0 d2 d2 command true"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("door outputs:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
