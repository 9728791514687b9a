package clickhouse

import (
	"context"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/iotpipe/iotpipe/sinks/clickhouse/chtest"
)

// srv is the one ClickHouse server of this package's tests: embedded
// (chDB child) unless CLICKHOUSE_DSN names another.
var srv chtest.Lazy

func TestMain(m *testing.M) {
	chtest.Main(m, &srv)
}

// freshDB creates an empty database for one test and returns a
// connection to it.
func freshDB(t testing.TB) (driver.Conn, string) {
	t.Helper()
	ctx := context.Background()
	admin, err := Open(ctx, srv.Get(t).DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := "t_" + sanitize(t.Name())
	if err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" SYNC"); err != nil {
		t.Fatal(err)
	}
	if err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	dsn := dsnWithDB(t, srv.Get(t).DSN, name)
	conn, err := Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, dsn
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}
