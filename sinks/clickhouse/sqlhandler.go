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

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// SQLHandlerOptions configures SQLHandler.
type SQLHandlerOptions struct {
	// MaxRows is the most rows returned; more are cut off and the answer
	// says "truncated". Default 10000.
	MaxRows int
	// Timeout bounds a request (the query's own limit is the user's
	// max_execution_time, which the server enforces). Default 35s.
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
// {"query": "..."} (whatever its Content-Type) or the SQL text. conn must
// be a restricted user's (see QueryEndpoint): its grants and settings
// profile (readonly = 1, limits) decide what a query may do, the server
// enforces them, and the handler changes no setting. A query that calls
// file() is refused before it runs (see refuseFileFunction). At most
// MaxRows rows are returned. The answer is JSON:
//
//	{"columns":[{"name":"c","type":"UInt64"}],"rows":[[42]],"truncated":false,"elapsed_ms":3.1}
//
// and errors are {"error": "..."} (the server's message when it refused
// the query) with status 400, or 405.
func SQLHandler(conn driver.Conn, opts SQLHandlerOptions) http.Handler {
	if opts.MaxRows <= 0 {
		opts.MaxRows = 10000
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 35 * time.Second
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
		ctx, cancel, timedOut := withoutDeadline(r.Context(), opts.Timeout)
		defer cancel()
		start := time.Now()
		err = refuseFileFunction(ctx, conn, query)
		var res *Result
		if err == nil {
			res, err = Query(ctx, conn, query, opts.MaxRows)
		}
		if err != nil {
			if timedOut() {
				err = errors.New("query timed out after " + opts.Timeout.String())
			}
			writeJSON(w, http.StatusBadRequest, sqlError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, sqlResponse{Result: res, ElapsedMS: float64(time.Since(start).Microseconds()) / 1000})
	})
}

// withoutDeadline returns a context canceled when parent is done or
// after timeout, which has no deadline: clickhouse-go turns a deadline
// into a max_execution_time setting, which a readonly = 1 user may not
// send. timedOut reports whether the timeout canceled it.
func withoutDeadline(parent context.Context, timeout time.Duration) (ctx context.Context, cancel context.CancelFunc, timedOut func() bool) {
	ctx, cancelCause := context.WithCancelCause(context.WithoutCancel(parent))
	stop := context.AfterFunc(parent, func() { cancelCause(context.Cause(parent)) })
	t := time.AfterFunc(timeout, func() { cancelCause(context.DeadlineExceeded) })
	cancel = func() {
		t.Stop()
		stop()
		cancelCause(context.Canceled)
	}
	timedOut = func() bool { return errors.Is(context.Cause(ctx), context.DeadlineExceeded) }
	return ctx, cancel, timedOut
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
