package clickhouse

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
	"github.com/iotpipe/iotpipe/sinks/clickhouse/chtest"
)

// queryTable creates a table of 50 rows in the default database, the
// one the embedded server's restricted user reads, named after the test.
func queryTable(t *testing.T) (table string, admin driver.Conn) {
	t.Helper()
	ctx := context.Background()
	admin, err := Open(ctx, srv.Get(t).DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	table = "default.kv_" + sanitize(t.Name())
	for _, stmt := range []string{
		"DROP TABLE IF EXISTS " + table,
		"CREATE TABLE " + table + " (k String, v UInt64) ENGINE = MergeTree ORDER BY k",
		"INSERT INTO " + table + " SELECT toString(number), number FROM numbers(50)",
	} {
		if err := admin.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	return table, admin
}

// TestSQLHandler runs POST /api/sql as the embedded server's restricted
// user: reads of the database work; every way out of it is refused with
// the server's message (files, the network, other users, other queries,
// writes, settings, the time limit).
func TestSQLHandler(t *testing.T) {
	ctx := context.Background()
	kv, admin := queryTable(t)
	h, closeH := QueryEndpoint(ctx, QueryEndpointOptions{
		AdminDSN: srv.Get(t).DSN, QueryDSN: srv.Get(t).QueryDSN, // "" on an external server: created with SQL
		Limits:  ddl.QueryLimits{Timeout: chtest.QueryTimeout},
		Handler: SQLHandlerOptions{MaxRows: 10, Timeout: 30 * time.Second},
	})
	defer closeH()
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		status      int
		rows        int
		truncated   bool
		errContains string
	}{
		{"select", "POST", "text/plain", "SELECT k, v FROM " + kv + " WHERE v < 3 ORDER BY v", 200, 3, false, ""},
		{"json body", "POST", "application/json", `{"query":"SELECT count() FROM ` + kv + `"}`, 200, 1, false, ""},
		{"json body sent as a form (curl -d)", "POST", "application/x-www-form-urlencoded", `{"query":"SELECT count() FROM ` + kv + `"}`, 200, 1, false, ""},
		{"json body, no content type", "POST", "", " \n{\"query\": \"SELECT k FROM " + kv + " LIMIT 2\"}", 200, 2, false, ""},
		{"sql body sent as json", "POST", "application/json", "SELECT 1", 200, 1, false, ""},
		{"json string is not an object", "POST", "application/json", `"SELECT 1"`, 400, 0, false, `a JSON body is an object {"query": "..."}`},
		{"json object without query", "POST", "", `{"sql":"SELECT 1"}`, 400, 0, false, `unknown field "sql"`},
		{"row limit", "POST", "", "SELECT * FROM " + kv, 200, 10, true, ""},
		{"table list", "POST", "", "SELECT name FROM system.tables WHERE database = 'default' AND name = '" + strings.TrimPrefix(kv, "default.") + "'", 200, 1, false, ""},
		{"show tables", "POST", "", "SHOW TABLES FROM default LIKE '" + strings.TrimPrefix(kv, "default.") + "'", 200, 1, false, ""},
		{"describe", "POST", "", "DESCRIBE TABLE " + kv, 200, 2, false, ""},
		{"numbers", "POST", "", "SELECT number FROM numbers(3)", 200, 3, false, ""},

		{"file() table function", "POST", "", "SELECT line FROM file('/proc/self/environ', 'RawBLOB', 'line String')", 400, 0, false, "READ ON FILE"},
		{"file() function", "POST", "", "SELECT file('/proc/self/environ')", 400, 0, false, "file() reads the server's files"},
		{"file() in a lambda", "POST", "", "SELECT arrayMap(p -> file(p), ['/etc/hostname'])", 400, 0, false, "file() reads the server's files"},
		{"file() explained", "POST", "", "EXPLAIN QUERY TREE SELECT file('/etc/hostname')", 400, 0, false, "file() reads the server's files"},
		{"a file as a table", "POST", "", "SELECT * FROM `/etc/hostname`", 400, 0, false, "READ ON FILE"},
		{"url()", "POST", "", "SELECT * FROM url('http://127.0.0.1:1/x', 'RawBLOB', 'x String')", 400, 0, false, "READ ON URL"},
		{"remote()", "POST", "", "SELECT * FROM remote('127.0.0.1:1', system.one)", 400, 0, false, "READ ON REMOTE"},
		{"s3()", "POST", "", "SELECT * FROM s3('http://127.0.0.1:1/bucket/x.csv')", 400, 0, false, "READ ON S3"},
		{"executable()", "POST", "", "SELECT * FROM executable('x.sh', 'TSV', 'a UInt8')", 400, 0, false, "CREATE TEMPORARY TABLE"},
		{"system.users", "POST", "", "SELECT name FROM system.users", 400, 0, false, "SELECT ON system.users"},
		{"system.processes", "POST", "", "SELECT query FROM system.processes", 400, 0, false, "SELECT ON system.processes"},
		{"kill query", "POST", "", "KILL QUERY WHERE 1", 400, 0, false, "system.processes"},
		{"system command", "POST", "", "SYSTEM STOP LISTEN TCP", 400, 0, false, "SYSTEM LISTEN"},
		{"insert refused", "POST", "", "INSERT INTO " + kv + " VALUES ('x', 1)", 400, 0, false, "INSERT"},
		{"drop refused", "POST", "", "DROP TABLE " + kv, 400, 0, false, "DROP TABLE"},
		{"create refused", "POST", "", "CREATE TABLE default.t2 (a UInt8) ENGINE = Memory", 400, 0, false, "CREATE TABLE"},
		{"temporary table refused", "POST", "", "CREATE TEMPORARY TABLE t3 (a UInt8)", 400, 0, false, "CREATE TEMPORARY TABLE"},
		{"set refused", "POST", "", "SET max_execution_time = 1000", 400, 0, false, "readonly mode"},
		{"settings clause refused", "POST", "", "SELECT 1 SETTINGS max_result_rows = 1000000", 400, 0, false, "readonly mode"},
		{"readonly not changeable", "POST", "", "SELECT 1 SETTINGS readonly = 0", 400, 0, false, "readonly"},
		{"time limit", "POST", "", "SELECT count() FROM system.numbers", 400, 0, false, "Timeout exceeded"},
		{"syntax error", "POST", "", "SELEC 1", 400, 0, false, "Syntax error"},
		{"empty", "POST", "", "  ", 400, 0, false, "empty query"},
		{"bad json", "POST", "application/json", `{"query":`, 400, 0, false, "not JSON"},
		{"get", "GET", "", "", 405, 0, false, "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := serveSQL(t, h, tt.method, tt.contentType, tt.body, tt.status)
			if len(resp.Rows) != tt.rows || resp.Truncated != tt.truncated || !strings.Contains(resp.Error, tt.errContains) {
				t.Errorf("rows %d truncated %v error %q; want %d %v %q", len(resp.Rows), resp.Truncated, resp.Error, tt.rows, tt.truncated, tt.errContains)
			}
		})
	}
	var n uint64
	if err := admin.QueryRow(ctx, "SELECT count() FROM "+kv).Scan(&n); err != nil || n != 50 {
		t.Fatalf("%s has %d rows (%v) after the refused writes, want 50", kv, n, err)
	}
}

// sqlAnswer is the JSON answer of POST /api/sql.
type sqlAnswer struct {
	Columns   []Column `json:"columns"`
	Rows      [][]any  `json:"rows"`
	Truncated bool     `json:"truncated"`
	Error     string   `json:"error"`
}

// serveSQL sends one request to h and decodes the answer, which must
// have the status want.
func serveSQL(t *testing.T, h http.Handler, method, contentType, body string, want int) sqlAnswer {
	t.Helper()
	req := httptest.NewRequest(method, "/api/sql", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != want {
		t.Fatalf("status %d, want %d: %s", rec.Code, want, rec.Body)
	}
	var resp sqlAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatalf("answer is not JSON: %v: %s", err, rec.Body)
	}
	return resp
}

func TestResultFormats(t *testing.T) {
	conn, _ := freshDB(t)
	res, err := Query(context.Background(), conn,
		"SELECT number AS n, toString(number) AS s, map('a', 1.5) AS m, toDateTime64('2026-01-02 03:04:05.678', 3, 'UTC') AS t, CAST(NULL AS Nullable(String)) AS z FROM numbers(2)", 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		write func(*Result, *bytes.Buffer) error
		want  string
	}{
		{"table", func(r *Result, b *bytes.Buffer) error { return r.WriteTable(b) },
			"n  s  m          t                         z\n0  0  {\"a\":1.5}  2026-01-02T03:04:05.678Z  NULL\n1  1  {\"a\":1.5}  2026-01-02T03:04:05.678Z  NULL\n(2 rows)\n"},
		{"csv", func(r *Result, b *bytes.Buffer) error { return r.WriteCSV(b) },
			"n,s,m,t,z\n0,0,\"{\"\"a\"\":1.5}\",2026-01-02T03:04:05.678Z,\n1,1,\"{\"\"a\"\":1.5}\",2026-01-02T03:04:05.678Z,\n"},
		{"json", func(r *Result, b *bytes.Buffer) error { return r.WriteJSON(b) },
			"[\n  {\"n\": 0, \"s\": \"0\", \"m\": {\"a\":1.5}, \"t\": \"2026-01-02T03:04:05.678Z\", \"z\": null},\n  {\"n\": 1, \"s\": \"1\", \"m\": {\"a\":1.5}, \"t\": \"2026-01-02T03:04:05.678Z\", \"z\": null}\n]\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := tt.write(res, &b); err != nil {
			t.Fatal(err)
		}
		if b.String() != tt.want {
			t.Errorf("%s:\n%s\nwant:\n%s", tt.name, b.String(), tt.want)
		}
	}
}

// FuzzSQLBody checks the body decoder of POST /api/sql: a body that opens
// with '{' is a JSON object whose query is returned as decoded; any other
// body is the SQL itself (unless it is a JSON value sent as JSON); an
// accepted query is never blank.
func FuzzSQLBody(f *testing.F) {
	f.Add([]byte(`{"query":"SELECT 1"}`), false)
	f.Add([]byte(`{"query":"SELECT 1"}`), true)
	f.Add([]byte("SELECT count() FROM telemetry"), false)
	f.Add([]byte(`"SELECT 1"`), true)
	f.Add([]byte(` {"query": "\u0000x", "query": "y"} `), false)
	f.Add([]byte(`{"query":"a"}{"query":"b"}`), false)
	f.Add([]byte(`{"Query":"SELECT 1"}`), false)
	f.Fuzz(func(t *testing.T, body []byte, jsonType bool) {
		q, err := decodeQuery(body, jsonType)
		if err == nil && strings.TrimSpace(q) == "" {
			t.Fatalf("accepted a blank query from %q", body)
		}
		trimmed := bytes.TrimSpace(body)
		switch {
		case len(trimmed) > 0 && trimmed[0] == '{':
			if err != nil {
				return
			}
			var req struct {
				Query *string `json:"query"`
			}
			if jerr := json.Unmarshal(trimmed, &req); jerr != nil || req.Query == nil || *req.Query != q {
				t.Fatalf("body %q gave query %q; encoding/json reads %v (%v)", body, q, req.Query, jerr)
			}
		case jsonType && json.Valid(trimmed):
			if err == nil {
				t.Fatalf("JSON non-object %q sent as JSON was accepted as %q", body, q)
			}
		default:
			if (err == nil) != (strings.TrimSpace(string(body)) != "") || (err == nil && q != string(body)) {
				t.Fatalf("plain body %q gave %q, %v", body, q, err)
			}
		}
	})
}

// TestQueryEndpointFailsClosed: /api/sql never runs as the admin user.
// Without a restricted user (the embedded server's admin may not create
// users: it has no writable user storage, as a server where the DSN's
// user lacks access management) or with a query DSN whose user may
// write, every request is answered 503 with the reason.
func TestQueryEndpointFailsClosed(t *testing.T) {
	ctx := context.Background()
	kv, _ := queryTable(t)
	tests := []struct {
		name     string
		queryDSN string
		want     string
	}{
		{"no user can be created", "", "cannot create the restricted query user"},
		{"the query user may write", srv.Get(t).DSN, "readonly = 0"},
		{"the query user unreachable", "clickhouse://127.0.0.1:1/default?dial_timeout=200ms", "unreachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, closeH := QueryEndpoint(ctx, QueryEndpointOptions{AdminDSN: srv.Get(t).DSN, QueryDSN: tt.queryDSN})
			defer closeH()
			resp := serveSQL(t, h, "POST", "", "SELECT count() FROM "+kv, 503)
			t.Log(resp.Error)
			if !strings.Contains(resp.Error, "POST /api/sql is disabled") || !strings.Contains(resp.Error, tt.want) {
				t.Errorf("error %q, want it to say the endpoint is disabled because %q", resp.Error, tt.want)
			}
		})
	}
}

// TestQueryUserStatementsParse has the server parse the statements that
// create the restricted user on an external server (the embedded server
// parses them but cannot run them: its users are in a file).
func TestQueryUserStatementsParse(t *testing.T) {
	conn, _ := freshDB(t)
	for _, stmt := range ddl.QueryUserStatements("iotpipe", "00ff", ddl.QueryLimits{}) {
		var formatted string
		if err := conn.QueryRow(context.Background(), "SELECT formatQuery(?)", stmt).Scan(&formatted); err != nil {
			t.Errorf("%s: %v", stmt, err)
		}
	}
}

func TestWithUser(t *testing.T) {
	tests := []struct{ in, want string }{
		{"clickhouse://admin:pw@ch1:9000/iot", "clickhouse://iotpipe_query_iot:00ff@ch1:9000/iot"},
		{"clickhouse://ch1:9000/iot?username=admin&password=pw&secure=true", "clickhouse://iotpipe_query_iot:00ff@ch1:9000/iot?secure=true"},
		{"http://admin@ch1:8123/iot", "http://iotpipe_query_iot:00ff@ch1:8123/iot"},
	}
	for _, tt := range tests {
		if got, err := withUser(tt.in, "iotpipe_query_iot", "00ff"); err != nil || got != tt.want {
			t.Errorf("withUser(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
