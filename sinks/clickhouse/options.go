package clickhouse

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"runtime"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
)

// DefaultGroup is the sink's Kafka consumer group.
const DefaultGroup = "iotpipe-clickhouse"

// ClientFactory makes Kafka clients: it applies its own options (seed
// brokers, TLS, SASL) and then opts. internal/eventlog.Log is one.
type ClientFactory interface {
	Client(opts ...kgo.Opt) (*kgo.Client, error)
}

// Options configures a Sink. Only Kafka is required; every other field
// has the default its comment states.
type Options struct {
	// Kafka makes the sink's Kafka client (one, for the consumer group
	// and the DLQ).
	Kafka ClientFactory
	// DSN is the ClickHouse server. Default DefaultDSN (the embedded one).
	DSN string
	// Insert chooses how rows travel. Default InsertArrowHTTP, the faster
	// in the benchmarks (see BenchmarkInsertNative and
	// BenchmarkInsertArrowHTTP).
	Insert InsertMode
	// HTTPDSN is the server's HTTP interface for InsertArrowHTTP. Default:
	// DSN itself when it is http(s)://, otherwise DSN with the scheme
	// http:// and port 9000 replaced by 8123 (9440 by https:// 8443). If
	// it cannot be derived or reached at start, the sink logs why and
	// inserts over the native protocol instead.
	HTTPDSN string
	// Topics names the topics. Default schemas.DefaultTopics(). The sink
	// reads Events, Shadows, Anomalies, Aggregates and Actions (the
	// actions of type "clickhouse"); a topic that does not exist yet is
	// read once it does. DLQ receives unstorable records.
	Topics schemas.Topics
	// Group is the consumer group. Default DefaultGroup.
	Group string
	// BatchRows flushes once this many rows are pending. Default 200000
	// (so FlushInterval, not the row count, paces inserts up to 200k
	// rows/s: each INSERT is a part the server writes and merges again).
	BatchRows int
	// FlushInterval flushes pending rows at most this long after the
	// first of them was read. Default 1s.
	FlushInterval time.Duration
	// MaxPayloadBytes sends larger events to the DLQ. Default 1 MiB;
	// negative means no limit.
	MaxPayloadBytes int
	// SourceIDWindow is how many source ids of the latest rows of each
	// derived table and partition the sink remembers, to drop a derived
	// record a processor produced again (see Sink). Default 20000.
	SourceIDWindow int
	// Schema shapes the DDL applied at start (TTL, dedup window).
	Schema ddl.Options
	// DecodeWorkers is how many goroutines decode a poll's records.
	// Default GOMAXPROCS.
	DecodeWorkers int
	// InsertConcurrency is how many inserts (of different tables or
	// source partitions) run at once. Default 4.
	InsertConcurrency int
	// InsertTimeout bounds one insert attempt. Default 60s.
	InsertTimeout time.Duration
	// MinBackoff and MaxBackoff bound the retry delay of inserts and
	// lookups while ClickHouse is unreachable. Defaults 100ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// Metrics receives measurements. Default: none.
	Metrics Metrics
	// Logger logs retries and DLQ records. Default slog.Default().
	Logger *slog.Logger
}

func (o *Options) setDefaults() {
	if o.DSN == "" {
		o.DSN = DefaultDSN
	}
	if o.Topics.Events == "" {
		o.Topics = schemas.DefaultTopics()
	}
	if o.Group == "" {
		o.Group = DefaultGroup
	}
	if o.BatchRows <= 0 {
		o.BatchRows = 200000
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.MaxPayloadBytes == 0 {
		o.MaxPayloadBytes = 1 << 20
	}
	if o.SourceIDWindow <= 0 {
		o.SourceIDWindow = 20000
	}
	if o.DecodeWorkers <= 0 {
		o.DecodeWorkers = runtime.GOMAXPROCS(0)
	}
	if o.InsertConcurrency <= 0 {
		o.InsertConcurrency = 4
	}
	if o.InsertTimeout <= 0 {
		o.InsertTimeout = time.Minute
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// InsertMode says how the sink sends rows to ClickHouse.
type InsertMode int

const (
	// InsertArrowHTTP sends each group as an Arrow IPC stream (INSERT ...
	// FORMAT ArrowStream) over clickhouse-go's HTTP protocol, LZ4
	// compressed.
	InsertArrowHTTP InsertMode = iota
	// InsertNative appends the columns to a clickhouse-go batch over the
	// native protocol, LZ4 compressed.
	InsertNative
)

// httpDSN derives the HTTP interface DSN from a native one.
func httpDSN(dsn string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "http", "https":
		return dsn, nil
	}
	host, port := u.Hostname(), u.Port()
	switch port {
	case "", "9000":
		u.Scheme, u.Host = "http", net.JoinHostPort(host, "8123")
	case "9440":
		u.Scheme, u.Host = "https", net.JoinHostPort(host, "8443")
	default:
		return "", fmt.Errorf("cannot guess the HTTP port for native port %s; set the HTTP DSN", port)
	}
	return u.String(), nil
}
