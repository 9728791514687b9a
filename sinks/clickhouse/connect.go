package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
)

// DefaultDSN is the embedded server's native endpoint.
const DefaultDSN = "clickhouse://127.0.0.1:9000/default"

// Open parses dsn, connects with compression on (LZ4 unless the DSN says
// otherwise), pings the server and checks its version against
// schemas/clickhouse.MinServerVersion. Errors say which of the three
// failed and what to do.
func Open(ctx context.Context, dsn string) (driver.Conn, error) {
	opts, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	conn, err := ch.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: open %s: %w", redact(dsn), err)
	}
	pctx, cancel := context.WithTimeout(ctx, opts.DialTimeout+5*time.Second)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse: server %s unreachable: %w (is it running? `iotpipe run` starts an embedded one; --clickhouse sets another)", strings.Join(opts.Addr, ","), err)
	}
	v, err := conn.ServerVersion()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse: server version: %w", err)
	}
	if err := ddl.CheckServerVersion(fmt.Sprintf("%d.%d.%d", v.Version.Major, v.Version.Minor, v.Version.Patch)); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// parseDSN parses a clickhouse:// (native) or http(s):// DSN with clear
// errors and turns compression on.
func parseDSN(dsn string) (*ch.Options, error) {
	if dsn == "" {
		return nil, errors.New("clickhouse: empty DSN; want clickhouse://host:9000/database")
	}
	scheme, _, ok := strings.Cut(dsn, "://")
	if !ok {
		return nil, fmt.Errorf("clickhouse: DSN %q has no scheme; want clickhouse://host:9000/database", redact(dsn))
	}
	switch scheme {
	case "clickhouse", "tcp", "http", "https":
	default:
		return nil, fmt.Errorf("clickhouse: DSN scheme %q not supported; want clickhouse://host:9000/database (native) or http://host:8123/database", scheme)
	}
	opts, err := ch.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: bad DSN %q: %w; want clickhouse://host:9000/database", redact(dsn), err)
	}
	if len(opts.Addr) == 0 || opts.Addr[0] == "" {
		return nil, fmt.Errorf("clickhouse: DSN %q names no host; want clickhouse://host:9000/database", redact(dsn))
	}
	if opts.Compression == nil || opts.Compression.Method == ch.CompressionNone {
		opts.Compression = &ch.Compression{Method: ch.CompressionLZ4}
	}
	if opts.DialTimeout == 0 || !strings.Contains(dsn, "dial_timeout") {
		opts.DialTimeout = 5 * time.Second
	}
	return opts, nil
}

// redact hides a password in a DSN for error messages.
func redact(dsn string) string {
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return dsn
	}
	at := strings.LastIndex(rest, "@")
	slash := strings.Index(rest, "/")
	if at < 0 || (slash >= 0 && at > slash) {
		return dsn
	}
	user, _, _ := strings.Cut(rest[:at], ":")
	return scheme + "://" + user + ":***" + rest[at:]
}
