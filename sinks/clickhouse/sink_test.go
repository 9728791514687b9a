package clickhouse

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
)

// countingMetrics counts what the sink reports.
type countingMetrics struct {
	inserted, skipped, failed, dlq atomic.Int64
}

func (m *countingMetrics) Inserted(_ string, rows int, _ time.Duration) { m.inserted.Add(int64(rows)) }
func (m *countingMetrics) InsertFailed(string)                          { m.failed.Add(1) }
func (m *countingMetrics) Skipped(_ string, rows int)                   { m.skipped.Add(int64(rows)) }
func (m *countingMetrics) DeadLettered()                                { m.dlq.Add(1) }

// cluster is an in-process Kafka with iotpipe's topics and a producer.
type cluster struct {
	c      *kfake.Cluster
	prod   *kgo.Client
	topics schemas.Topics
}

// Client is a client of the cluster with opts: the cluster is the
// sink's client factory, as internal/eventlog.Log is in the binary.
func (c *cluster) Client(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.c.ListenAddrs()...)}, opts...)...)
}

func newCluster(t testing.TB, partitions int32) *cluster {
	t.Helper()
	topics := schemas.DefaultTopics()
	c, err := kfake.NewCluster(kfake.SeedTopics(partitions, topics.All()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	return &cluster{c: c, prod: prod, topics: topics}
}

// event builds an events-topic record as ingest writes it.
func event(thing string, typ schemas.EventType, rx time.Time, value string) *kgo.Record {
	env := schemas.Envelope{Type: typ, Topic: "dt/" + thing + "/telemetry", ClientID: thing, Principal: "anonymous", QoS: 1, ReceivedAt: rx.UnixNano()}
	return &kgo.Record{Topic: "iotpipe.events", Key: []byte(thing), Value: []byte(value), Headers: env.Headers()}
}

// produce writes n telemetry events for things thing-0..thing-9,
// received from base on, one millisecond apart.
func (c *cluster) produce(t testing.TB, from, n int, base time.Time) {
	t.Helper()
	rs := make([]*kgo.Record, 0, n)
	for i := from; i < from+n; i++ {
		thing := fmt.Sprintf("thing-%d", i%10)
		rs = append(rs, event(thing, schemas.EventPublish, base.Add(time.Duration(i)*time.Millisecond),
			fmt.Sprintf(`{"temp":%d.5,"seq":%d,"pos":{"x":1,"y":[2,3]},"ok":true}`, i%40, i)))
	}
	if err := c.prod.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func startSink(t testing.TB, c *cluster, dsn, group string, m Metrics, mods ...func(*Options)) *Sink {
	t.Helper()
	opts := Options{
		Kafka:         c,
		DSN:           dsn,
		HTTPDSN:       httpDSNFor(t, dsn),
		Group:         group,
		BatchRows:     20000,
		FlushInterval: 200 * time.Millisecond,
		MaxBackoff:    500 * time.Millisecond,
		Metrics:       m,
		Logger:        slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	}
	for _, mod := range mods {
		mod(&opts)
	}
	s, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// httpDSNFor is the test server's HTTP interface for the database of dsn.
func httpDSNFor(t testing.TB, dsn string) string {
	t.Helper()
	base := srv.Get(t).HTTPURL
	if base == "" {
		return "" // an external server without CLICKHOUSE_HTTP_URL: derived, or native
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return base + u.Path
}

// modes are the insert paths every exactly-once test runs over.
var modes = []struct {
	name string
	mode InsertMode
}{{"arrow", InsertArrowHTTP}, {"native", InsertNative}}

func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// counts returns count() and uniqExact(partition, offset) of table.
func counts(t testing.TB, conn driver.Conn, table string) (n, uniq uint64) {
	t.Helper()
	if err := conn.QueryRow(context.Background(), "SELECT count(), uniqExact(partition, offset) FROM "+table).Scan(&n, &uniq); err != nil {
		t.Fatal(err)
	}
	return n, uniq
}

func TestSinkExactlyOnceAndReplay(t *testing.T) {
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) { testExactlyOnceAndReplay(t, md.mode) })
	}
}

func testExactlyOnceAndReplay(t *testing.T, mode InsertMode) {
	conn, dsn := freshDB(t)
	c := newCluster(t, 3)
	const n = 30000
	base := time.Date(2026, 11, 22, 23, 59, 50, 0, time.UTC) // crosses midnight
	c.produce(t, 0, n, base)

	m := &countingMetrics{}
	withMode := func(o *Options) { o.Insert = mode }
	s := startSink(t, c, dsn, "g1", m, withMode)
	if s.InsertMode() != mode {
		t.Fatalf("sink inserts with mode %d, want %d", s.InsertMode(), mode)
	}
	waitFor(t, "all rows", 60*time.Second, func() bool { got, _ := counts(t, conn, "telemetry"); return got >= n })
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	got, uniq := counts(t, conn, "telemetry")
	if got != n || uniq != n {
		t.Fatalf("count()=%d uniqExact(partition, offset)=%d, want %d", got, uniq, n)
	}
	var days uint64
	if err := conn.QueryRow(context.Background(), "SELECT uniqExact(toDate(received_at)) FROM telemetry").Scan(&days); err != nil {
		t.Fatal(err)
	}
	if days != 2 {
		t.Errorf("rows span %d days, want 2", days)
	}
	var lo, hi int64
	if err := conn.QueryRow(context.Background(), "SELECT toUnixTimestamp64Milli(min(received_at)), toUnixTimestamp64Milli(max(received_at)) FROM telemetry").Scan(&lo, &hi); err != nil {
		t.Fatal(err)
	}
	if lo != base.UnixMilli() || hi != base.UnixMilli()+n-1 {
		t.Errorf("received_at spans %d..%d, want %d..%d", lo, hi, base.UnixMilli(), base.UnixMilli()+n-1)
	}

	// The metrics were flattened by dotted path; booleans left out.
	var temp, y1 float64
	var hasOK bool
	if err := conn.QueryRow(context.Background(),
		"SELECT metrics['temp'], metrics['pos.y.1'], mapContains(metrics, 'ok') FROM telemetry WHERE offset = 5 AND partition = 0").Scan(&temp, &y1, &hasOK); err != nil {
		t.Fatal(err)
	}
	if y1 != 3 || hasOK || temp != float64(int(temp))+0.5 {
		t.Errorf("metrics: temp=%v pos.y.1=%v has ok=%v", temp, y1, hasOK)
	}

	// Replay from offset 0 in a new group: nothing added.
	m2 := &countingMetrics{}
	s2 := startSink(t, c, dsn, "g-replay", m2, withMode)
	waitFor(t, "replay skipped every record", 60*time.Second, func() bool { return m2.skipped.Load() >= n })
	// More events after the replayed ones still arrive once.
	c.produce(t, n, 1000, base)
	waitFor(t, "new rows", 60*time.Second, func() bool { got, _ := counts(t, conn, "telemetry"); return got >= n+1000 })
	if err := s2.Stop(); err != nil {
		t.Fatal(err)
	}
	got, uniq = counts(t, conn, "telemetry")
	if got != n+1000 || uniq != n+1000 {
		t.Fatalf("after replay: count()=%d uniqExact=%d, want %d", got, uniq, n+1000)
	}
	if m2.inserted.Load() != 1000 {
		t.Errorf("replay inserted %d rows, want 1000", m2.inserted.Load())
	}
}

// TestSinkDedupToken shows the server drops a repeated insert of the same
// source range even when the high-water offsets are not consulted.
func TestSinkDedupToken(t *testing.T) {
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) { testDedupToken(t, md.mode) })
	}
}

func testDedupToken(t *testing.T, mode InsertMode) {
	ctx := context.Background()
	conn, dsn := freshDB(t)
	c := newCluster(t, 1)
	s := startSink(t, c, dsn, "g", nil, func(o *Options) { o.Insert = mode })
	defer s.Stop()
	g := &group{key: groupKey{table: "telemetry", topic: "iotpipe.events", partition: 0, day: 1}, first: 10, last: 12, cols: newColumns("telemetry")}
	rx := time.Unix(86400, 0).UTC()
	for off := int64(10); off <= 12; off++ {
		g.cols.add(&telemetryRow{thing: "a", receivedAt: rx, eventTime: rx, payload: "x", offset: off})
	}
	for range 3 {
		if err := s.insert(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := counts(t, conn, "telemetry"); got != 3 {
		t.Fatalf("count() = %d after three identical inserts, want 3", got)
	}
}

func TestSinkBadInput(t *testing.T) {
	ctx := context.Background()
	conn, dsn := freshDB(t)
	c := newCluster(t, 1)
	rx := time.Now()
	noEnvelope := &kgo.Record{Topic: "iotpipe.events", Key: []byte("x"), Value: []byte(`{}`)}
	records := []*kgo.Record{
		event("fridge-1", schemas.EventPublish, rx, "door opened \xff not json"),
		noEnvelope,
		event("fridge-1", schemas.EventConnected, rx, ""),
		event("fridge-1", schemas.EventPublish, time.Unix(0, 0), `{"a":1}`),
		event("fridge-1", schemas.EventPublish, rx, `{"big":"`+strings.Repeat("x", 600<<10)+`"}`),
	}
	if err := c.prod.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	m := &countingMetrics{}
	s := startSink(t, c, dsn, "g", m, func(o *Options) { o.MaxPayloadBytes = 512 << 10 })
	waitFor(t, "rows", 30*time.Second, func() bool { got, _ := counts(t, conn, "telemetry"); return got >= 1 })
	waitFor(t, "dlq", 30*time.Second, func() bool { return m.dlq.Load() >= 3 })
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	var payload string
	var size uint64
	if err := conn.QueryRow(ctx, "SELECT payload, length(metrics) FROM telemetry WHERE offset = 0").Scan(&payload, &size); err != nil {
		t.Fatal(err)
	}
	if payload != "door opened \xff not json" || size != 0 {
		t.Errorf("non-JSON row: payload %q, %d metrics; want it as received with none", payload, size)
	}
	var event string
	if err := conn.QueryRow(ctx, "SELECT event FROM presence").Scan(&event); err != nil || event != "connected" {
		t.Errorf("presence event = %q, %v", event, err)
	}
	if got, _ := counts(t, conn, "telemetry"); got != 1 {
		t.Errorf("telemetry rows = %d, want 1", got)
	}

	cons, err := kgo.NewClient(kgo.SeedBrokers(c.c.ListenAddrs()...), kgo.ConsumeTopics("iotpipe.dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	var reasons []string
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for len(reasons) < 3 && pctx.Err() == nil {
		cons.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			reasons = append(reasons, string(schemas.HeaderValue(r.Headers, "dlq.source"))+" "+string(schemas.HeaderValue(r.Headers, "dlq.reason")))
		})
	}
	want := []string{
		"iotpipe.events/0/1 unstorable: envelope: no version header",
		"iotpipe.events/0/3 unstorable: receive time 0 ns outside",
		"iotpipe.events/0/4 unstorable: payload of 614410 bytes exceeds the 524288-byte limit",
	}
	if len(reasons) != len(want) {
		t.Fatalf("DLQ records %q, want %d", reasons, len(want))
	}
	for i := range want {
		if !strings.HasPrefix(reasons[i], want[i]) {
			t.Errorf("DLQ record %d = %q, want prefix %q", i, reasons[i], want[i])
		}
	}
}

// TestSinkClickHouseKilled kills the embedded server with SIGKILL while
// events arrive; the supervisor restarts it and the sink catches up with
// every row exactly once.
func TestSinkClickHouseKilled(t *testing.T) {
	if srv.Get(t).Embedded == nil {
		t.Skip("needs the embedded server: CLICKHOUSE_DSN points at an external one that this test cannot kill")
	}
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) { testClickHouseKilled(t, md.mode) })
	}
}

func testClickHouseKilled(t *testing.T, mode InsertMode) {
	conn, dsn := freshDB(t)
	c := newCluster(t, 3)
	m := &countingMetrics{}
	s := startSink(t, c, dsn, "g", m, func(o *Options) { o.Insert = mode })
	defer s.Stop()

	const batches, per = 40, 1000
	base := time.Now().UTC()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for b := range batches {
			c.produce(t, b*per, per, base)
			time.Sleep(25 * time.Millisecond)
		}
	}()
	waitFor(t, "first rows", 30*time.Second, func() bool { return m.inserted.Load() > 0 })
	pid := srv.Get(t).Embedded.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	waitFor(t, "server back", 60*time.Second, func() bool {
		p := srv.Get(t).Embedded.PID()
		return p != 0 && p != pid && conn.Ping(context.Background()) == nil
	})
	waitFor(t, "all rows after the restart", 90*time.Second, func() bool {
		got, _ := counts(t, conn, "telemetry")
		return got >= batches*per
	})
	time.Sleep(500 * time.Millisecond) // a double would show up now
	got, uniq := counts(t, conn, "telemetry")
	if got != batches*per || uniq != batches*per {
		t.Fatalf("count()=%d uniqExact=%d, want %d", got, uniq, batches*per)
	}
	t.Logf("%d failed attempts while the server was down; %d rows inserted", m.failed.Load(), m.inserted.Load())
}

func TestHTTPDSN(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"clickhouse://127.0.0.1:9000/default", "http://127.0.0.1:8123/default", ""},
		{"clickhouse://u:p@ch.example:9440/db?secure=true", "https://u:p@ch.example:8443/db?secure=true", ""},
		{"clickhouse://ch.example/db", "http://ch.example:8123/db", ""},
		{"http://h:8123/db", "http://h:8123/db", ""},
		{"clickhouse://h:19000/db", "", "cannot guess"},
	}
	for _, tt := range tests {
		got, err := httpDSN(tt.in)
		if got != tt.want || (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("httpDSN(%q) = %q, %v; want %q, %q", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// TestSinkRebalance runs two sinks in one group while events arrive: the
// partitions move between them and every event is stored once.
func TestSinkRebalance(t *testing.T) {
	conn, dsn := freshDB(t)
	c := newCluster(t, 4)
	base := time.Now().UTC()
	m1, m2 := &countingMetrics{}, &countingMetrics{}
	s1 := startSink(t, c, dsn, "g", m1)
	c.produce(t, 0, 10000, base)
	waitFor(t, "first rows", 30*time.Second, func() bool { return m1.inserted.Load() > 0 })
	s2 := startSink(t, c, dsn, "g", m2)
	// Keep events coming until the second sink has stored some: the
	// first must let the rebalance through between its batches.
	n := 10000
	deadline := time.Now().Add(60 * time.Second)
	for m2.inserted.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the second sink got no partition within 60s")
		}
		c.produce(t, n, 500, base)
		n += 500
		time.Sleep(100 * time.Millisecond)
	}
	c.produce(t, n, 5000, base)
	n += 5000
	waitFor(t, "all rows", 60*time.Second, func() bool { got, _ := counts(t, conn, "telemetry"); return got >= uint64(n) })
	if err := s1.Stop(); err != nil {
		t.Fatal(err)
	}
	c.produce(t, n, 1000, base) // s2 takes every partition
	n += 1000
	waitFor(t, "rows after s1 left", 60*time.Second, func() bool { got, _ := counts(t, conn, "telemetry"); return got >= uint64(n) })
	if err := s2.Stop(); err != nil {
		t.Fatal(err)
	}
	got, uniq := counts(t, conn, "telemetry")
	if got != uint64(n) || uniq != uint64(n) {
		t.Fatalf("count()=%d uniqExact=%d, want %d", got, uniq, n)
	}
	t.Logf("%d events: sink 1 inserted %d rows, sink 2 %d", n, m1.inserted.Load(), m2.inserted.Load())
}

// TestInsertSharesOnePart shows the groups of several source partitions
// go in one INSERT: one part with every row, in both insert modes, and
// the same INSERT again is dropped by its token.
func TestInsertSharesOnePart(t *testing.T) {
	for _, md := range modes {
		t.Run(md.name, func(t *testing.T) {
			ctx := context.Background()
			conn, dsn := freshDB(t)
			c := newCluster(t, 1)
			s := startSink(t, c, dsn, "g", nil, func(o *Options) { o.Insert = md.mode })
			defer s.Stop()
			rx := time.Unix(86400, 0).UTC()
			var groups []*group
			for p := int32(0); p < 3; p++ {
				g := &group{key: groupKey{table: "telemetry", topic: "iotpipe.events", partition: p, day: 1}, first: 10, last: 11, cols: newColumns("telemetry")}
				for off := int64(10); off <= 11; off++ {
					g.cols.add(&telemetryRow{thing: fmt.Sprintf("t%d", p), receivedAt: rx, eventTime: rx, payload: "x", partition: p, offset: off})
				}
				groups = append(groups, g)
			}
			for range 2 {
				if err := s.insert(ctx, groups...); err != nil {
					t.Fatal(err)
				}
			}
			if got, uniq := counts(t, conn, "telemetry"); got != 6 || uniq != 6 {
				t.Fatalf("count() = %d, uniqExact = %d after the same 3-partition insert twice, want 6", got, uniq)
			}
			var parts uint64
			if err := conn.QueryRow(ctx, "SELECT count() FROM system.parts WHERE database = currentDatabase() AND table = 'telemetry' AND active").Scan(&parts); err != nil {
				t.Fatal(err)
			}
			if parts != 1 {
				t.Errorf("%d active parts, want 1 (one INSERT)", parts)
			}
		})
	}
}

func TestPlanInserts(t *testing.T) {
	g := func(table string, p int32, day int64, first int64) *group {
		return &group{key: groupKey{table: table, topic: "iotpipe.events", partition: p, day: day}, first: first}
	}
	name := func(x *group) string {
		return fmt.Sprintf("%s/p%d/d%d/%d", x.key.table, x.key.partition, x.key.day, x.first)
	}
	tests := []struct {
		name   string
		groups []*group
		want   [][]string // lanes of INSERTs, each "a+b"
	}{
		{"one per partition", []*group{g("telemetry", 0, 1, 0), g("telemetry", 1, 1, 5), g("telemetry", 2, 1, 9)},
			[][]string{{"telemetry/p0/d1/0+telemetry/p1/d1/5+telemetry/p2/d1/9"}}},
		{"a partition across midnight", []*group{g("telemetry", 0, 1, 0), g("telemetry", 0, 2, 7), g("telemetry", 1, 2, 3)},
			[][]string{{"telemetry/p0/d1/0", "telemetry/p1/d2/3", "telemetry/p0/d2/7"}}},
		{"tables are lanes", []*group{g("presence", 0, 1, 0), g("telemetry", 0, 1, 1), g("telemetry", 1, 1, 2)},
			[][]string{{"presence/p0/d1/0"}, {"telemetry/p0/d1/1+telemetry/p1/d1/2"}}},
		{"none", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got [][]string
			for _, lane := range planInserts(tt.groups) {
				var ins []string
				for _, in := range lane {
					var names []string
					for _, x := range in {
						names = append(names, name(x))
					}
					ins = append(ins, strings.Join(names, "+"))
				}
				got = append(got, ins)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("planInserts = %q, want %q", got, tt.want)
			}
		})
	}
}
