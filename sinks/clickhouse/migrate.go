package clickhouse

import (
	"context"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
)

// Migrate applies the migrations of schemas/clickhouse that the server
// has not recorded yet, then sets every table's TTL to opts.TTLDays. It
// is idempotent: running it again changes nothing.
func Migrate(ctx context.Context, conn driver.Conn, opts ddl.Options) error {
	ms, err := ddl.Migrations(opts)
	if err != nil {
		return err
	}
	if err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+ddl.MigrationsTable+` (
		version UInt32, name String, applied_at DateTime DEFAULT now()
	) ENGINE = ReplacingMergeTree ORDER BY version`); err != nil {
		return fmt.Errorf("clickhouse migrate: create %s: %w", ddl.MigrationsTable, err)
	}
	applied := map[uint32]bool{}
	rows, err := conn.Query(ctx, `SELECT version FROM `+ddl.MigrationsTable)
	if err != nil {
		return fmt.Errorf("clickhouse migrate: read applied versions: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("clickhouse migrate: read applied versions: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("clickhouse migrate: read applied versions: %w", err)
	}
	for _, m := range ms {
		if applied[uint32(m.Version)] {
			continue
		}
		for i, stmt := range m.Statements {
			if err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("clickhouse migrate: %04d_%s statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		if err := conn.Exec(ctx, `INSERT INTO `+ddl.MigrationsTable+` (version, name) VALUES (?, ?)`, uint32(m.Version), m.Name); err != nil {
			return fmt.Errorf("clickhouse migrate: record %04d_%s: %w", m.Version, m.Name, err)
		}
	}
	return applyTTL(ctx, conn, opts.TTLDays)
}

// applyTTL makes each table's TTL match days: MODIFY TTL (without
// rewriting existing parts) when days > 0, REMOVE TTL when 0 and the table
// has one.
func applyTTL(ctx context.Context, conn driver.Conn, days int) error {
	for _, t := range ddl.Tables() {
		var create string
		if err := conn.QueryRow(ctx, `SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = ?`, t.Name).Scan(&create); err != nil {
			return fmt.Errorf("clickhouse migrate: read %s definition: %w", t.Name, err)
		}
		hasTTL := strings.Contains(create, " TTL ")
		want := fmt.Sprintf("toIntervalDay(%d)", days)
		switch {
		case days > 0 && !(hasTTL && strings.Contains(create, want)):
			stmt := "ALTER TABLE " + t.Name + " MODIFY " + ddl.TTLClause(t.TimeColumn, days) + " SETTINGS materialize_ttl_after_modify = 0"
			if err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("clickhouse migrate: set TTL of %s: %w", t.Name, err)
			}
		case days <= 0 && hasTTL:
			if err := conn.Exec(ctx, "ALTER TABLE "+t.Name+" REMOVE TTL"); err != nil {
				return fmt.Errorf("clickhouse migrate: remove TTL of %s: %w", t.Name, err)
			}
		}
	}
	return nil
}
