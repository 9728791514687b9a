package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/iotpipe/iotpipe/rulesql"
)

// HTTPOptions configure the dashboard's handlers.
type HTTPOptions struct {
	// Log is the events topic they read.
	Log Log
	// DefaultLimit is how many events a request reads when it gives no
	// limit (default 1,000); MaxLimit the most it may ask for (default
	// 100,000).
	DefaultLimit, MaxLimit int
	// MaxTime is the longest a request reads (default 30s); what it
	// read by then is answered.
	MaxTime time.Duration
	// Logger receives failures (default slog.Default()).
	Logger *slog.Logger
}

func (o *HTTPOptions) defaults() {
	if o.DefaultLimit <= 0 {
		o.DefaultLimit = 1000
	}
	if o.MaxLimit <= 0 {
		o.MaxLimit = 100_000
	}
	if o.MaxTime <= 0 {
		o.MaxTime = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Trailers of the handlers' answers.
const (
	// TrailerEvents is how many events the request read.
	TrailerEvents = "X-Iotpipe-Events"
	// TrailerTruncated is "limit" or "time" when the answer stopped at
	// the request's bound, "" when it read all it selected.
	TrailerTruncated = "X-Iotpipe-Truncated"
)

// selectionQuery is a request's selection, as in iotpipe events.
type selectionQuery struct {
	Thing string `json:"thing"`
	Topic string `json:"topic"`
	Type  string `json:"type"`
	From  string `json:"from"`
	To    string `json:"to"`
	Limit int    `json:"limit"`
}

func (q *selectionQuery) selection(o *HTTPOptions, now time.Time) (Selection, error) {
	sel := Selection{Thing: q.Thing, Topic: q.Topic, Limit: q.Limit}
	if sel.Limit == 0 {
		sel.Limit = o.DefaultLimit
	}
	if sel.Limit < 0 || sel.Limit > o.MaxLimit {
		return sel, fmt.Errorf("limit %d: want 1 to %d", q.Limit, o.MaxLimit)
	}
	var err error
	if sel.Types, err = ParseTypes(q.Type); err != nil {
		return sel, err
	}
	if q.From != "" {
		if sel.From, err = ParseTime(q.From, now); err != nil {
			return sel, fmt.Errorf("from: %w", err)
		}
	}
	if q.To != "" {
		if sel.To, err = ParseTime(q.To, now); err != nil {
			return sel, fmt.Errorf("to: %w", err)
		}
	}
	return sel, sel.Validate()
}

// httpError writes an error document in the shape of the rest of the
// API (AWS IoT's): {"code","message","timestamp"}.
func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg, "timestamp": time.Now().Unix()})
}

// stream is an answer of JSON lines, flushed as it goes, with the
// trailers that say how it ended.
type stream struct {
	w      http.ResponseWriter
	events int
	lines  int
}

func newStream(w http.ResponseWriter) *stream {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Trailer", TrailerEvents+", "+TrailerTruncated)
	w.WriteHeader(http.StatusOK)
	return &stream{w: w}
}

func (s *stream) line(b []byte) error {
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	if s.lines++; s.lines%256 == 0 {
		http.NewResponseController(s.w).Flush()
	}
	return nil
}

// end sets the trailers: the events read, and whether the read stopped
// at its bounds (err is what Read returned; a client gone is not logged).
func (s *stream) end(sel Selection, err error, log *slog.Logger, what string) {
	truncated := ""
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		truncated = "time"
	case err != nil && !errors.Is(err, context.Canceled):
		log.Warn(what+" failed", "err", err)
		truncated = "error: " + err.Error()
	case sel.Limit > 0 && s.events >= sel.Limit:
		truncated = "limit"
	}
	s.w.Header().Set(TrailerEvents, strconv.Itoa(s.events))
	s.w.Header().Set(TrailerTruncated, truncated)
}

// EventsHandler serves GET /api/events?thing=&topic=&type=&from=&to=&limit=:
// the selected events as iotpipe events --json lines, at most limit
// (default DefaultLimit) and for at most MaxTime; the trailers say how
// many and whether it stopped at a bound.
func EventsHandler(o HTTPOptions) http.Handler {
	o.defaults()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query()
		q := selectionQuery{Thing: v.Get("thing"), Topic: v.Get("topic"), Type: v.Get("type"), From: v.Get("from"), To: v.Get("to")}
		if l := v.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil {
				httpError(w, http.StatusBadRequest, fmt.Sprintf("limit %q: want a number", l))
				return
			}
			q.Limit = n
		}
		sel, err := q.selection(&o, time.Now())
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		var line []byte
		o.serveRead(w, r, sel, "GET /api/events", func(_ Plan, s *stream) (*streamRun, error) {
			return &streamRun{add: func(_ context.Context, ev *Event) error {
				var err error
				if line, err = AppendJSON(line[:0], ev); err != nil {
					return err
				}
				return s.line(line)
			}}, nil
		})
	})
}

// streamRun is what a streaming handler does with the events read: add
// each, then close, then write the last line (given how the read
// ended: "", "limit", "time" or an error).
type streamRun struct {
	add   func(context.Context, *Event) error
	close func(context.Context) error
	last  func(truncated string) []byte
}

// serveRead plans sel and answers with what begin's run streams, the
// read bounded by MaxTime and sel.Limit.
func (o *HTTPOptions) serveRead(w http.ResponseWriter, r *http.Request, sel Selection, what string, begin func(Plan, *stream) (*streamRun, error)) {
	ctx, cancel := context.WithTimeout(r.Context(), o.MaxTime)
	defer cancel()
	plan, err := PlanRead(ctx, o.Log, sel)
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	s := newStream(w)
	run, err := begin(plan, s)
	if err != nil {
		o.Logger.Warn(what+" failed", "err", err)
		return
	}
	err = Read(ctx, o.Log, sel, plan, nil, func(ev *Event) error { s.events++; return run.add(ctx, ev) })
	if run.close != nil {
		err = errors.Join(err, run.close(context.WithoutCancel(ctx)))
	}
	s.end(sel, err, o.Logger, what)
	if run.last != nil {
		s.line(run.last(w.Header().Get(TrailerTruncated)))
	}
}

// replayRequest is the body of POST /api/replay.
type replayRequest struct {
	// Rules is the rule file's text (one or more rules).
	Rules string `json:"rules"`
	selectionQuery
}

// ReplayHandler serves POST /api/replay with a JSON body {"rules": "<rule
// file text>", "thing", "topic", "type", "from", "to", "limit"}: the
// rules run over the selected events (at most limit, default
// DefaultLimit, for at most MaxTime) with every effect off, answered as
// JSON lines: each output as iotpipe rules test prints it, then
// {"summary": {...}} (events, matched, fired and errors per rule, and
// "truncated": "limit" or "time" when the replay stopped at a bound).
// Rules that do not compile are a 400 naming line and column.
func ReplayHandler(o HTTPOptions) http.Handler {
	o.defaults()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req replayRequest
		body, err := io.ReadAll(r.Body)
		if err == nil {
			err = json.Unmarshal(body, &req)
		}
		if err != nil {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("body: want JSON {\"rules\": \"...\", \"from\": ..., ...}: %v", err))
			return
		}
		sel, err := req.selection(&o, time.Now())
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		rules, err := rulesql.Compile(req.Rules, rulesql.WithFile("request.sql"))
		var set *rulesql.Set
		if err == nil {
			set, err = rulesql.NewSet(rules)
		}
		if err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		o.serveRead(w, r, sel, "POST /api/replay", func(plan Plan, s *stream) (*streamRun, error) {
			var line []byte
			eng, err := NewEngine(set, Options{Partitions: plan.Partitions}, func(out Output) error {
				line = append(append(line[:0], out.Line...), '\n')
				return s.line(line)
			})
			if err != nil {
				return nil, err
			}
			return &streamRun{add: eng.Add, close: eng.Close, last: func(truncated string) []byte {
				b, _ := json.Marshal(map[string]any{"summary": eng.Summary(), "truncated": truncated})
				return append(b, '\n')
			}}, nil
		})
	})
}
