package clickhouse

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
)

func dsnWithDB(t testing.TB, dsn, db string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db
	return u.String()
}

func tableDef(t *testing.T, conn driver.Conn, name string) string {
	t.Helper()
	var create string
	if err := conn.QueryRow(context.Background(), `SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = ?`, name).Scan(&create); err != nil {
		t.Fatalf("table %s: %v", name, err)
	}
	return create
}

func TestMigrateTwiceAndTTL(t *testing.T) {
	ctx := context.Background()
	conn, _ := freshDB(t)
	steps := []struct {
		name    string
		ttlDays int
		wantTTL string // substring of every table's definition, "" = no TTL
	}{
		{"first", 0, ""},
		{"again", 0, ""},
		{"ttl 30", 30, "toIntervalDay(30)"},
		{"ttl 30 again", 30, "toIntervalDay(30)"},
		{"ttl 7", 7, "toIntervalDay(7)"},
		{"ttl off", 0, ""},
	}
	for _, st := range steps {
		if err := Migrate(ctx, conn, ddl.Options{TTLDays: st.ttlDays}); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		for _, tb := range ddl.Tables() {
			def := tableDef(t, conn, tb.Name)
			if st.wantTTL == "" && strings.Contains(def, " TTL ") {
				t.Errorf("%s: %s has a TTL: %s", st.name, tb.Name, def)
			}
			if st.wantTTL != "" && !strings.Contains(def, st.wantTTL) {
				t.Errorf("%s: %s lacks %s: %s", st.name, tb.Name, st.wantTTL, def)
			}
			if !strings.Contains(def, "non_replicated_deduplication_window = 10000") {
				t.Errorf("%s: %s lacks the dedup window: %s", st.name, tb.Name, def)
			}
		}
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+ddl.MigrationsTable+" FINAL").Scan(&n); err != nil {
		t.Fatal(err)
	}
	ms, _ := ddl.Migrations(ddl.Options{})
	if n != uint64(len(ms)) {
		t.Errorf("recorded migrations = %d, want %d", n, len(ms))
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		dsn  string
		want string
	}{
		{"", "empty DSN"},
		{"127.0.0.1:9000", "no scheme"},
		{"mysql://127.0.0.1:3306/x", "not supported"},
		{"clickhouse://127.0.0.1:9000/default?dial_timeout=banana", "bad DSN"},
		{"clickhouse://127.0.0.1:1/default?dial_timeout=500ms", "unreachable"},
	}
	for _, tt := range tests {
		_, err := Open(context.Background(), tt.dsn)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Open(%q) = %v, want error containing %q", tt.dsn, err, tt.want)
		}
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"clickhouse://u:secret@h:9000/db", "clickhouse://u:***@h:9000/db"},
		{"clickhouse://h:9000/db", "clickhouse://h:9000/db"},
	}
	for _, tt := range tests {
		if got := redact(tt.in); got != tt.want {
			t.Errorf("redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestOpenHTTP opens the same server over its HTTP interface.
func TestOpenHTTP(t *testing.T) {
	s := srv.Get(t)
	if s.HTTPURL == "" {
		t.Skip("CLICKHOUSE_HTTP_URL not set for the external server")
	}
	conn, err := Open(context.Background(), s.HTTPURL+"/default")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var one uint8
	if err := conn.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 over HTTP = %d, %v", one, err)
	}
}

// TestMigrateShadowsCurrentBackfill applies migration 0003 to a database
// whose shadows table already holds changes: shadows_current shows their
// current state at once.
func TestMigrateShadowsCurrentBackfill(t *testing.T) {
	ctx := context.Background()
	conn, _ := freshDB(t)
	if err := Migrate(ctx, conn, ddl.Options{}); err != nil {
		t.Fatal(err)
	}
	// Back to the schema before 0003, with changes stored.
	for _, stmt := range []string{
		"DROP VIEW shadows_current", "DROP VIEW shadows_latest_mv", "DROP TABLE shadows_latest",
		"ALTER TABLE " + ddl.MigrationsTable + " DELETE WHERE version = 3 SETTINGS mutations_sync = 2",
		`INSERT INTO shadows (thing, shadow, version, updated_at, state, deleted) VALUES
			('lamp-1', '', 1, '2026-01-01 00:00:00', '{"reported":{"on":true}}', false),
			('lamp-1', '', 2, '2026-01-02 00:00:00', '{"reported":{"on":false}}', false),
			('lamp-2', '', 1, '2026-01-01 00:00:00', '{"reported":{"on":true}}', false),
			('lamp-2', '', 1, '2026-01-03 00:00:00', '', true)`,
	} {
		if err := conn.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if err := Migrate(ctx, conn, ddl.Options{}); err != nil {
		t.Fatal(err)
	}
	var thing, state string
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT any(thing), any(state), count() FROM shadows_current").Scan(&thing, &state, &n); err != nil {
		t.Fatal(err)
	}
	if n != 1 || thing != "lamp-1" || state != `{"reported":{"on":false}}` {
		t.Errorf("shadows_current after the backfill: %d rows, %s %s; want lamp-1 alone, off", n, thing, state)
	}
}
