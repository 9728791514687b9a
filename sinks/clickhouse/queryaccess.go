package clickhouse

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
)

// QueryEndpointOptions says how POST /api/sql reaches ClickHouse.
type QueryEndpointOptions struct {
	// AdminDSN is the server iotpipe writes to. Its user creates the
	// restricted query user when QueryDSN is empty.
	AdminDSN string
	// QueryDSN is a restricted user's DSN: the embedded server's, or one
	// the operator made for an external server (--clickhouse-query-dsn).
	// Empty: iotpipe creates the user (see EnsureQueryUser).
	QueryDSN string
	// Limits shape the user iotpipe creates.
	Limits ddl.QueryLimits
	// Handler configures the handler.
	Handler SQLHandlerOptions
	// Logger logs why the endpoint is disabled. Default slog.Default().
	Logger *slog.Logger
}

// QueryEndpoint returns the handler of POST /api/sql and a function
// that closes its connection. Queries run as a restricted user, never as
// AdminDSN's: QueryDSN's, or one that AdminDSN's user creates. When
// there is none (the user may not create users, QueryDSN is unreachable
// or its user may write), the handler answers every request 503 with
// the reason, which is also logged: the endpoint fails closed.
func QueryEndpoint(ctx context.Context, opts QueryEndpointOptions) (http.Handler, func()) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "clickhouse-sql")
	disabled := func(err error) (http.Handler, func()) {
		msg := "POST /api/sql is disabled: " + err.Error()
		log.Warn(msg)
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			writeJSON(w, http.StatusServiceUnavailable, sqlError{msg})
		}), func() {}
	}
	dsn := opts.QueryDSN
	if dsn == "" {
		var err error
		if dsn, err = EnsureQueryUser(ctx, opts.AdminDSN, opts.Limits); err != nil {
			return disabled(fmt.Errorf("the --clickhouse user cannot create the restricted query user (%w); create a read-only user and pass its DSN as --clickhouse-query-dsn", err))
		}
	}
	conn, err := Open(ctx, dsn)
	if err != nil {
		return disabled(fmt.Errorf("query user: %w", err))
	}
	if err := checkReadonly(ctx, conn); err != nil {
		conn.Close()
		return disabled(err)
	}
	if err := conn.Exec(ctx, "SELECT count() FROM system.processes"); err == nil {
		log.Warn("the query user can read system tables beyond its grants (the server's access_control_improvements.select_from_system_db_requires_grant is false): /api/sql can see other users' queries in system.processes and the logs")
	}
	return SQLHandler(conn, opts.Handler), func() { conn.Close() }
}

// checkReadonly refuses a user whose queries may write or change
// settings (readonly is not 1).
func checkReadonly(ctx context.Context, conn driver.Conn) error {
	var readonly string
	if err := conn.QueryRow(ctx, "SELECT toString(getSetting('readonly'))").Scan(&readonly); err != nil {
		return fmt.Errorf("query user: read its readonly setting: %w", err)
	}
	if readonly != "1" {
		return fmt.Errorf("the query user has readonly = %s: it may write or change its limits; give it readonly = 1 (a settings profile) and only SELECT grants", readonly)
	}
	return nil
}

// EnsureQueryUser creates (or brings up to date) the restricted query
// user of adminDSN's database on that server with the statements of
// schemas/clickhouse.QueryUserStatements, run as adminDSN's user, and
// returns the user's DSN. Its password is derived from the admin's
// (HMAC-SHA256), so every iotpipe node with the same DSN sets the same
// one. It fails when the admin user may not manage users.
func EnsureQueryUser(ctx context.Context, adminDSN string, limits ddl.QueryLimits) (string, error) {
	opts, err := parseDSN(adminDSN)
	if err != nil {
		return "", err
	}
	db := opts.Auth.Database
	if db == "" {
		db = "default"
	}
	if err := ddl.CheckDatabase(db); err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, []byte(opts.Auth.Password))
	mac.Write([]byte("iotpipe_query/" + db))
	password := hex.EncodeToString(mac.Sum(nil))
	conn, err := Open(ctx, adminDSN)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	for _, stmt := range ddl.QueryUserStatements(db, password, limits) {
		if err := conn.Exec(ctx, stmt); err != nil {
			return "", fmt.Errorf("%s: %w", strings.ReplaceAll(stmt, password, "***"), err)
		}
	}
	return withUser(adminDSN, ddl.QueryUser(db), password)
}

// withUser is dsn with another user and password.
func withUser(dsn, user, password string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("clickhouse: bad DSN %q: %w", redact(dsn), err)
	}
	u.User = url.UserPassword(user, password)
	q := u.Query()
	if q.Has("username") || q.Has("password") {
		q.Del("username")
		q.Del("password")
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// refuseFileFunction refuses a query that calls file(), which reads a
// file of the server's machine. A server checks it against READ ON FILE
// (which the query user lacks), but the embedded server runs in chDB's
// local mode, where the function reads any file unchecked. The query is
// parsed by the server (EXPLAIN AST, which runs nothing), so aliases,
// lambdas and nested queries are seen as they are.
func refuseFileFunction(ctx context.Context, conn driver.Conn, query string) error {
	rows, err := conn.Query(ctx, "EXPLAIN AST "+query)
	if err != nil {
		return err
	}
	defer rows.Close()
	parent := ""
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return err
		}
		f := strings.Fields(line)
		// The table function file() (under a TableExpression) is the
		// server's to refuse: it checks READ ON FILE in every mode.
		if len(f) >= 2 && f[0] == "Function" && strings.EqualFold(f[1], "file") && parent != "TableExpression" {
			return errFileFunction
		}
		if len(f) > 0 {
			parent = f[0]
		}
	}
	return rows.Err()
}

var errFileFunction = errors.New("refused: file() reads the server's files; /api/sql reads the database only")
