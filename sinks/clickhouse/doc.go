// Package clickhouse writes iotpipe's log into ClickHouse, exactly once:
// Sink consumes the events topic (and the derived shadows, anomalies,
// aggregates and actions topics, reading only committed transactions),
// batches rows per source partition, inserts each flush's rows of a
// table in one block with a deduplication token derived from the rows'
// source ids (derived tables) or source offsets, drops a derived record produced again under an id the table
// holds, and commits its Kafka offsets only after ClickHouse confirmed
// the insert.
//
// Open connects to and checks a server, Migrate applies the versioned
// DDL from schemas/clickhouse, and QueryEndpoint serves the dashboard's
// queries (POST /api/sql) as a restricted user, never as the one that
// writes. The embedded server (chDB) lives in the embedded subpackage.
package clickhouse
