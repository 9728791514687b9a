package clickhouse

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
)

// benchRows is the size of one insert in the insert benchmarks.
const benchRows = 100000

// telemetryGroup builds a group of n generated telemetry rows.
func telemetryGroup(n int, first int64) *group {
	g := &group{key: groupKey{table: "telemetry", topic: "iotpipe.events", partition: 0}, first: first, last: first + int64(n) - 1, cols: newColumns("telemetry")}
	base := time.Now().UTC()
	for i := range n {
		rx := base.Add(time.Duration(i) * time.Millisecond)
		g.cols.add(&telemetryRow{
			thing: fmt.Sprintf("fridge-%d", i%1000), topic: fmt.Sprintf("dt/fridge-%d/telemetry", i%1000),
			clientID: fmt.Sprintf("fridge-%d", i%1000), principal: "anonymous", qos: 1,
			receivedAt: rx, eventTime: rx,
			payload: fmt.Sprintf(`{"temp":%d.5,"door":%d,"seq":%d}`, i%40, i%2, i),
			metrics: map[string]float64{"temp": float64(i%40) + 0.5, "door": float64(i % 2), "seq": float64(i)},
			offset:  first + int64(i),
		})
	}
	return g
}

func benchSetup(b *testing.B) (*Sink, string) {
	b.Helper()
	conn, dsn := freshDB(b)
	if err := Migrate(context.Background(), conn, ddl.Options{}); err != nil {
		b.Fatal(err)
	}
	return &Sink{opts: Options{}, conn: conn}, dsn
}

// cpuMeter measures the CPU time of this process (the client) and of the
// server (its OSCPUVirtualTimeMicroseconds counter) over a benchmark, so
// the two insert paths compare by cost, not only by wall time, which
// the shared machine's load makes noisy.
type cpuMeter struct {
	s              *Sink
	client, server time.Duration
}

func (m *cpuMeter) read(b *testing.B) (client, server time.Duration) {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	client = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	var us uint64
	if err := m.s.conn.QueryRow(context.Background(), "SELECT value FROM system.events WHERE event = 'OSCPUVirtualTimeMicroseconds'").Scan(&us); err != nil {
		b.Fatal(err)
	}
	return client, time.Duration(us) * time.Microsecond
}

func (m *cpuMeter) start(b *testing.B) { m.client, m.server = m.read(b) }

func (m *cpuMeter) stop(b *testing.B, rows int) {
	c, s := m.read(b)
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64((c-m.client).Nanoseconds())/float64(b.N*rows), "client-cpu-ns/row")
	b.ReportMetric(float64((s-m.server).Nanoseconds())/float64(b.N*rows), "server-cpu-ns/row")
}

// BenchmarkInsertNative inserts 100k-row telemetry blocks with columnar
// appends over the native protocol (LZ4), as the sink does.
func BenchmarkInsertNative(b *testing.B) {
	s, _ := benchSetup(b)
	g := telemetryGroup(benchRows, 0)
	m := &cpuMeter{s: s}
	b.ResetTimer()
	m.start(b)
	for i := range b.N {
		g.first, g.last = int64(i)*benchRows, int64(i+1)*benchRows-1
		if err := s.insert(context.Background(), g); err != nil {
			b.Fatal(err)
		}
	}
	m.stop(b, benchRows)
}

// BenchmarkInsertArrowHTTP inserts the same blocks as an Arrow IPC stream
// over HTTP (FORMAT ArrowStream, clickhouse-go's InsertFormat, LZ4),
// encoding the Arrow record from the same columns each time (the cost
// the sink pays).
func BenchmarkInsertArrowHTTP(b *testing.B) {
	s, _ := benchSetup(b)
	base := srv.Get(b).HTTPURL
	if base == "" {
		b.Skip("CLICKHOUSE_HTTP_URL not set for the external server")
	}
	httpConn, err := Open(context.Background(), base+"/t_"+sanitize(b.Name()))
	if err != nil {
		b.Fatal(err)
	}
	defer httpConn.Close()
	g := telemetryGroup(benchRows, 0)
	m := &cpuMeter{s: s}
	var buf bytes.Buffer
	b.ResetTimer()
	m.start(b)
	for i := range b.N {
		buf.Reset()
		if err := encodeArrow(&buf, g.cols); err != nil {
			b.Fatal(err)
		}
		ctx := ch.Context(context.Background(), ch.WithSettings(ch.Settings{"insert_deduplication_token": fmt.Sprintf("arrow-%d", i)}))
		if err := httpConn.InsertFormat(ctx, "ArrowStream", g.insertQuery(), &buf); err != nil {
			b.Fatal(err)
		}
	}
	m.stop(b, benchRows)
}

// timingMetrics records when the first and the last rows were confirmed.
type timingMetrics struct {
	countingMetrics
	mu          sync.Mutex
	first, last time.Time
	firstRows   int
}

func (m *timingMetrics) Inserted(table string, rows int, took time.Duration) {
	m.mu.Lock()
	if m.first.IsZero() {
		m.first, m.firstRows = time.Now(), rows
	}
	m.last = time.Now()
	m.mu.Unlock()
	m.countingMetrics.Inserted(table, rows, took)
}

// BenchmarkSink measures the whole sink: 300k events already in an
// in-process Kafka (3 partitions), read, decoded, batched and inserted
// into the embedded server. rows/s counts from the start of the sink
// (connect, DDL, group join included); steady-rows/s from the first
// confirmed insert to the last; client-cpu-ns/row and server-cpu-ns/row
// are the CPU per row of this process and of the server, the figures
// the machine's load changes least.
func BenchmarkSink(b *testing.B) {
	const n = 300000
	c := newCluster(b, 3)
	base := time.Now().UTC()
	for from := 0; from < n; from += 20000 {
		c.produce(b, from, 20000, base)
	}
	b.ResetTimer()
	var total, steady, client, server time.Duration
	var steadyRows int
	for i := range b.N {
		b.StopTimer()
		conn, dsn := freshDB(b)
		cpu := &cpuMeter{s: &Sink{conn: conn}}
		cpu.start(b)
		b.StartTimer()
		start := time.Now()
		m := &timingMetrics{}
		s := startSink(b, c, dsn, fmt.Sprintf("bench-%d", i), m, func(o *Options) { o.BatchRows = 100000; o.FlushInterval = time.Second })
		for m.inserted.Load() < n {
			time.Sleep(5 * time.Millisecond)
		}
		total += time.Since(start)
		steady += m.last.Sub(m.first)
		steadyRows += n - m.firstRows
		b.StopTimer()
		cl, sv := cpu.read(b)
		client, server = client+cl-cpu.client, server+sv-cpu.server
		s.Stop()
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*n)/total.Seconds(), "rows/s")
	b.ReportMetric(float64(steadyRows)/steady.Seconds(), "steady-rows/s")
	// The client CPU includes the in-process Kafka (kfake) serving the
	// fetches; the server's is the embedded ClickHouse's.
	b.ReportMetric(float64(client.Nanoseconds())/float64(b.N*n), "client-cpu-ns/row")
	b.ReportMetric(float64(server.Nanoseconds())/float64(b.N*n), "server-cpu-ns/row")
}

// BenchmarkDecode measures the CPU the sink spends per event before the
// insert: envelope, payload decode, metric flattening, column append,
// with the per-goroutine scratch and row reused as the sink reuses them.
func BenchmarkDecode(b *testing.B) {
	d := decoder{topics: schemas.DefaultTopics(), maxPayload: 1 << 20}
	env := schemas.Envelope{Type: schemas.EventPublish, Topic: "dt/fridge-1/telemetry", ClientID: "fridge-1", QoS: 1, ReceivedAt: time.Now().UnixNano()}
	r := &kgo.Record{Topic: "iotpipe.events", Key: []byte("fridge-1"), Value: []byte(`{"temp":4.5,"door":"closed","power":{"w":120,"v":230},"timestamp":1763805600}`), Headers: env.Headers()}
	cols := newColumns("telemetry")
	var (
		sc   scratch
		slot telemetryView
	)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		row, err := d.decodeInto(r, &sc, &slot) // as decodeAll does

		if err != nil {
			b.Fatal(err)
		}
		cols.add(row)
		if i%100000 == 99999 {
			cols.reset()
		}
	}
}
