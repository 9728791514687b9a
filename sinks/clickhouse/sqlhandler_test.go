package clickhouse

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestSQLHandler(t *testing.T) {
	conn, _ := freshDB(t)
	ctx := context.Background()
	if err := conn.Exec(ctx, "CREATE TABLE kv (k String, v UInt64) ENGINE = MergeTree ORDER BY k"); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "INSERT INTO kv SELECT toString(number), number FROM numbers(50)"); err != nil {
		t.Fatal(err)
	}
	h := SQLHandler(conn, SQLHandlerOptions{MaxRows: 10, Timeout: 5 * time.Second})
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
		{"select", "POST", "text/plain", "SELECT k, v FROM kv WHERE v < 3 ORDER BY v", 200, 3, false, ""},
		{"json body", "POST", "application/json", `{"query":"SELECT count() FROM kv"}`, 200, 1, false, ""},
		{"json body sent as a form (curl -d)", "POST", "application/x-www-form-urlencoded", `{"query":"SELECT count() FROM kv"}`, 200, 1, false, ""},
		{"json body, no content type", "POST", "", " \n{\"query\": \"SELECT k FROM kv LIMIT 2\"}", 200, 2, false, ""},
		{"sql body sent as json", "POST", "application/json", "SELECT 1", 200, 1, false, ""},
		{"json string is not an object", "POST", "application/json", `"SELECT 1"`, 400, 0, false, `a JSON body is an object {"query": "..."}`},
		{"json object without query", "POST", "", `{"sql":"SELECT 1"}`, 400, 0, false, `unknown field "sql"`},
		{"row limit", "POST", "", "SELECT * FROM kv", 200, 10, true, ""},
		{"insert refused", "POST", "", "INSERT INTO kv VALUES ('x', 1)", 400, 0, false, "readonly"},
		{"drop refused", "POST", "", "DROP TABLE kv", 400, 0, false, "readonly"},
		{"readonly not changeable", "POST", "", "SELECT 1 SETTINGS readonly = 0", 400, 0, false, "readonly"},
		{"syntax error", "POST", "", "SELEC 1", 400, 0, false, "Syntax error"},
		{"empty", "POST", "", "  ", 400, 0, false, "empty query"},
		{"bad json", "POST", "application/json", `{"query":`, 400, 0, false, "not JSON"},
		{"get", "GET", "", "", 405, 0, false, "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/api/sql", strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			var resp struct {
				Columns   []Column `json:"columns"`
				Rows      [][]any  `json:"rows"`
				Truncated bool     `json:"truncated"`
				Error     string   `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatalf("answer is not JSON: %v: %s", err, rec.Body)
			}
			if len(resp.Rows) != tt.rows || resp.Truncated != tt.truncated || !strings.Contains(resp.Error, tt.errContains) {
				t.Errorf("rows %d truncated %v error %q; want %d %v %q", len(resp.Rows), resp.Truncated, resp.Error, tt.rows, tt.truncated, tt.errContains)
			}
		})
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM kv").Scan(&n); err != nil || n != 50 {
		t.Fatalf("kv has %d rows (%v) after the refused writes, want 50", n, err)
	}
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
