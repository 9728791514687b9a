package clickhouse

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics receives the sink's measurements. Implementations must be safe
// for concurrent use; NewPrometheusMetrics is one.
type Metrics interface {
	// Inserted reports rows ClickHouse confirmed for table, and how long
	// the insert took.
	Inserted(table string, rows int, took time.Duration)
	// InsertFailed reports a failed insert attempt (it will be retried).
	InsertFailed(table string)
	// Skipped reports rows the table already holds: records read again
	// (a replay) or produced again (a derived record's source id).
	Skipped(table string, rows int)
	// DeadLettered reports a record sent to the DLQ.
	DeadLettered()
}

type noMetrics struct{}

func (noMetrics) Inserted(string, int, time.Duration) {}
func (noMetrics) InsertFailed(string)                 {}
func (noMetrics) Skipped(string, int)                 {}
func (noMetrics) DeadLettered()                       {}

// PrometheusMetrics implements Metrics with Prometheus collectors.
type PrometheusMetrics struct {
	rows     *prometheus.CounterVec
	failures *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	dlq      prometheus.Counter
	latency  *prometheus.HistogramVec
}

// NewPrometheusMetrics creates the sink's collectors (iotpipe_clickhouse_*)
// and registers them with reg.
func NewPrometheusMetrics(reg prometheus.Registerer) (*PrometheusMetrics, error) {
	m := &PrometheusMetrics{
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_clickhouse_rows_inserted_total", Help: "Rows ClickHouse confirmed, by table.",
		}, []string{"table"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_clickhouse_insert_failures_total", Help: "Failed insert attempts (retried), by table.",
		}, []string{"table"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_clickhouse_rows_skipped_total", Help: "Rows the table already held (read again, or a derived record produced again), by table.",
		}, []string{"table"}),
		dlq: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "iotpipe_clickhouse_dead_lettered_total", Help: "Records sent to the DLQ as unstorable.",
		}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "iotpipe_clickhouse_insert_seconds", Help: "Insert latency, by table.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"table"}),
	}
	for _, c := range []prometheus.Collector{m.rows, m.failures, m.skipped, m.dlq, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Inserted implements Metrics.
func (m *PrometheusMetrics) Inserted(table string, rows int, took time.Duration) {
	m.rows.WithLabelValues(table).Add(float64(rows))
	m.latency.WithLabelValues(table).Observe(took.Seconds())
}

// InsertFailed implements Metrics.
func (m *PrometheusMetrics) InsertFailed(table string) { m.failures.WithLabelValues(table).Inc() }

// Skipped implements Metrics.
func (m *PrometheusMetrics) Skipped(table string, rows int) {
	m.skipped.WithLabelValues(table).Add(float64(rows))
}

// DeadLettered implements Metrics.
func (m *PrometheusMetrics) DeadLettered() { m.dlq.Inc() }
