package web

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
)

// Querier runs a read-only SQL query against ClickHouse.
type Querier interface {
	Query(ctx context.Context, sql string) (*Rows, error)
}

// Rows is a query's result as POST /api/sql answers it.
type Rows struct {
	Columns []struct {
		Name string `json:"name"`
		Type string `json:"type"`
	} `json:"columns"`
	Rows      [][]any `json:"rows"`
	Truncated bool    `json:"truncated"`
}

// ErrNoClickHouse is returned by the dashboard's ClickHouse views on a
// node without ClickHouse.
var ErrNoClickHouse = errors.New("this node has no ClickHouse query endpoint (run the sink role, or iotpipe run without --clickhouse off)")

// SQLEndpoint is a Querier over the handler of POST /api/sql, called in
// the process: the dashboard's queries run as the same restricted user,
// with the same limits, as the SQL console's.
type SQLEndpoint struct{ Handler http.Handler }

// Query implements Querier.
func (e SQLEndpoint) Query(ctx context.Context, sql string) (*Rows, error) {
	if e.Handler == nil {
		return nil, ErrNoClickHouse
	}
	body, _ := json.Marshal(map[string]string{"query": sql})
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "/api/sql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.Handler.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		var msg struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &msg)
		return nil, fmt.Errorf("clickhouse query (HTTP %d): %s", rec.Code, cmp.Or(msg.Error, msg.Message, strings.TrimSpace(rec.Body.String())))
	}
	dec := json.NewDecoder(rec.Body)
	dec.UseNumber()
	var rows Rows
	if err := dec.Decode(&rows); err != nil {
		return nil, fmt.Errorf("clickhouse query: decode answer: %w", err)
	}
	return &rows, nil
}

// sqlString quotes s as a ClickHouse string literal.
func sqlString(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case 0:
			b.WriteString(`\0`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// Typed reads of a result cell (JSON numbers arrive as json.Number;
// ClickHouse's 64-bit integers as strings or numbers).

func cellString(v any) string {
	switch t := v.(type) {
	case string:
		return t
	case json.Number:
		return t.String()
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func cellInt(v any) int64 {
	switch t := v.(type) {
	case json.Number:
		if n, err := t.Int64(); err == nil {
			return n
		}
		f, _ := t.Float64()
		return int64(f)
	case string:
		n, _ := json.Number(t).Int64()
		return n
	case bool:
		if t {
			return 1
		}
	}
	return 0
}

func cellFloat(v any) (float64, bool) {
	switch t := v.(type) {
	case json.Number:
		f, err := t.Float64()
		return f, err == nil
	case string:
		f, err := json.Number(t).Float64()
		return f, err == nil
	}
	return 0, false
}
