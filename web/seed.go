package web

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// seedPage is how many things one seed query reads (the query user
// returns at most 10,000 rows).
const seedPage = 5000

// seedBounds are, per events partition, the last offset ClickHouse's
// telemetry and presence tables hold (-1: none). The fleet index is
// seeded with the rows up to them and follows the log after them, so
// every event counts exactly once whatever the sink's lag.
type seedBounds struct {
	telemetry, presence []int64
}

// start is where following partition p begins: after the lower bound.
func (b seedBounds) start(p int32) int64 { return min(b.telemetry[p], b.presence[p]) + 1 }

// seedFleet fills f from ClickHouse: per thing its publishes (count,
// first and last receive time, latest topic) and its latest presence
// event. It returns the bounds it read up to.
func seedFleet(ctx context.Context, q Querier, f *fleet, partitions int32) (seedBounds, error) {
	b := seedBounds{telemetry: make([]int64, partitions), presence: make([]int64, partitions)}
	for _, t := range []struct {
		table string
		dst   []int64
	}{{"telemetry", b.telemetry}, {"presence", b.presence}} {
		for p := range t.dst {
			t.dst[p] = -1
		}
		rows, err := q.Query(ctx, "SELECT partition, max(`offset`) FROM "+t.table+" GROUP BY partition")
		if err != nil {
			return b, fmt.Errorf("seed the fleet: last offsets of %s: %w", t.table, err)
		}
		for _, r := range rows.Rows {
			if p := cellInt(r[0]); p >= 0 && p < int64(partitions) {
				t.dst[p] = cellInt(r[1])
			}
		}
	}
	if err := seedPages(ctx, q, fmt.Sprintf(`SELECT thing, count(), toUnixTimestamp64Milli(min(received_at)), toUnixTimestamp64Milli(max(received_at)), argMax(topic, (received_at, %s))
FROM telemetry WHERE %s AND thing > %%s GROUP BY thing ORDER BY thing LIMIT %d`, "`offset`", boundCond(b.telemetry), seedPage),
		func(r []any) {
			f.seedTelemetry(cellString(r[0]), cellInt(r[1]), cellInt(r[2]), cellInt(r[3]), cellString(r[4]))
		}); err != nil {
		return b, fmt.Errorf("seed the fleet from telemetry: %w", err)
	}
	if err := seedPages(ctx, q, fmt.Sprintf(`SELECT thing, argMax(event, (received_at, %s)) = 'connected', toUnixTimestamp64Milli(min(received_at)), toUnixTimestamp64Milli(max(received_at))
FROM presence WHERE %s AND event IN ('connected', 'disconnected') AND thing > %%s GROUP BY thing ORDER BY thing LIMIT %d`, "`offset`", boundCond(b.presence), seedPage),
		func(r []any) {
			f.seedPresence(cellString(r[0]), cellInt(r[1]) == 1, cellInt(r[2]), cellInt(r[3]))
		}); err != nil {
		return b, fmt.Errorf("seed the fleet from presence: %w", err)
	}
	return b, nil
}

// seedPages runs query (with %s for the last thing of the previous page)
// page after page until a page is short.
func seedPages(ctx context.Context, q Querier, query string, fn func([]any)) error {
	after := ""
	for {
		rows, err := q.Query(ctx, fmt.Sprintf(query, sqlString(after)))
		if err != nil {
			return err
		}
		for _, r := range rows.Rows {
			fn(r)
		}
		if len(rows.Rows) < seedPage {
			return nil
		}
		after = cellString(rows.Rows[len(rows.Rows)-1][0])
	}
}

// boundCond is the condition "offset <= the bound of its partition".
func boundCond(bounds []int64) string {
	var b strings.Builder
	b.WriteString("`offset` <= arrayElement([")
	for i, o := range bounds {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(o, 10))
	}
	b.WriteString("], partition + 1)")
	return b.String()
}
