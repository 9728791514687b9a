// Package clickhouse writes iotpipe's log into ClickHouse, exactly once:
// Sink consumes the events topic (and the derived shadows, anomalies,
// aggregates and actions topics), batches rows per source partition,
// inserts them over clickhouse-go v2's native protocol with a
// deduplication token derived from the batch's source offsets, and
// commits its Kafka offsets only after ClickHouse confirmed the insert.
//
// Connect opens and checks a server, Migrate applies the versioned DDL
// from schemas/clickhouse, and SQLHandler serves read-only queries for
// the dashboard. The embedded server (chDB) lives in the embedded
// subpackage.
package clickhouse
