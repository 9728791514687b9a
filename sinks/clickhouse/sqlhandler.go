package clickhouse

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// SQLHandlerOptions configures SQLHandler.
type SQLHandlerOptions struct {
	// MaxRows is the most rows returned; more are cut off and the answer
	// says "truncated". Default 10000.
	MaxRows int
	// Timeout bounds a query (server-side max_execution_time and the
	// request context). Default 30s.
	Timeout time.Duration
	// MaxQueryBytes bounds the request body. Default 64 KiB.
	MaxQueryBytes int64
}

// sqlRequest is the JSON body of POST /api/sql.
type sqlRequest struct {
	Query string `json:"query"`
}

// sqlResponse is the JSON answer of POST /api/sql.
type sqlResponse struct {
	*Result
	ElapsedMS float64 `json:"elapsed_ms"`
}

type sqlError struct {
	Error string `json:"error"`
}

// SQLHandler serves POST /api/sql for the dashboard. The body is JSON
// {"query": "..."} (whatever its Content-Type) or the SQL text. The
// query runs with the server's readonly=2 setting (reads only; settings
// may change but not readonly itself), at most MaxRows rows and within
// Timeout. The answer is JSON:
//
//	{"columns":[{"name":"c","type":"UInt64"}],"rows":[[42]],"truncated":false,"elapsed_ms":3.1}
//
// and errors are {"error": "..."} with status 400 (the query failed or
// was refused) or 405.
func SQLHandler(conn driver.Conn, opts SQLHandlerOptions) http.Handler {
	if opts.MaxRows <= 0 {
		opts.MaxRows = 10000
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.MaxQueryBytes <= 0 {
		opts.MaxQueryBytes = 64 << 10
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, sqlError{"use POST with the query as the body"})
			return
		}
		query, err := readQuery(r, opts.MaxQueryBytes)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, sqlError{err.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), opts.Timeout)
		defer cancel()
		ctx = ch.Context(ctx, ch.WithSettings(ch.Settings{
			"readonly":             2,
			"max_result_rows":      opts.MaxRows + 1,
			"result_overflow_mode": "break",
			"max_execution_time":   int(opts.Timeout.Seconds() + 0.999),
		}))
		start := time.Now()
		res, err := Query(ctx, conn, query, opts.MaxRows)
		if err != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				err = errors.New("query timed out after " + opts.Timeout.String())
			}
			writeJSON(w, http.StatusBadRequest, sqlError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, sqlResponse{Result: res, ElapsedMS: float64(time.Since(start).Microseconds()) / 1000})
	})
}

// readQuery reads the query of a POST /api/sql body: a JSON object
// {"query": "..."} whatever the Content-Type says (curl -d sends JSON as
// a form), otherwise the body is the SQL text. Only a body that is JSON
// but not an object, with a JSON Content-Type, is refused as such.
func readQuery(r *http.Request, limit int64) (string, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return "", fmt.Errorf("read body: %w", err)
	}
	if int64(len(body)) > limit {
		return "", fmt.Errorf("query longer than %d bytes", limit)
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return decodeQuery(body, mt == "application/json")
}

// decodeQuery is readQuery's decoding of a body read in full; jsonType
// says the request declared a JSON body.
func decodeQuery(body []byte, jsonType bool) (string, error) {
	query := string(body)
	trimmed := bytes.TrimSpace(body)
	switch {
	case len(trimmed) > 0 && trimmed[0] == '{':
		var req sqlRequest
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return "", fmt.Errorf(`body is not JSON {"query": "..."}: %w`, err)
		}
		if dec.More() {
			return "", errors.New(`body has more after the JSON object {"query": "..."}`)
		}
		query = req.Query
	case jsonType && json.Valid(trimmed):
		return "", errors.New(`a JSON body is an object {"query": "..."}`)
	}
	if strings.TrimSpace(query) == "" {
		return "", errors.New("empty query")
	}
	return query, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
