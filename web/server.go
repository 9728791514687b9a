// Package web is iotpipe's dashboard: the static pages (embedded, served
// without a token: the page asks for the API token and sends it as
// Authorization: Bearer on every request) and the few JSON and
// server-sent-event endpoints only the dashboard needs, over the node's
// existing APIs (the log, POST /api/sql's restricted ClickHouse user).
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/schemas"
)

//go:embed static
var static embed.FS

// Options configure a Dashboard.
type Options struct {
	// Log makes clients of the event log (eventlog.Log.Client).
	Log struct{ Client eventlog.NewClientFunc }
	// Topics names the log's topics.
	Topics schemas.Topics
	// Query runs the dashboard's ClickHouse reads; nil on a node
	// without ClickHouse (the fleet index is then built from the log).
	Query Querier
	// RuleFiles lists the loaded rule files (the rules processor's
	// status); the rules page shows their text. Nil: none.
	RuleFiles func() []string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Dashboard keeps the fleet index and the live streams, and serves the
// pages and the dashboard's endpoints.
type Dashboard struct {
	opts     Options
	log      *slog.Logger
	query    Querier
	fleet    *fleet
	bounds   seedBounds
	hub      *hub
	commands commandLog
	dlq      dlqRing
	ready    atomic.Bool
	// done is closed when Run returns: the streams end.
	done chan struct{}
}

// New returns a Dashboard; Run builds its index and keeps it current.
func New(o Options) *Dashboard {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Topics.Events == "" {
		o.Topics = schemas.DefaultTopics()
	}
	q := o.Query
	if q == nil {
		q = SQLEndpoint{}
	}
	return &Dashboard{opts: o, log: o.Logger, query: q, fleet: newFleet(), hub: newHub(), done: make(chan struct{})}
}

// liveInterval is how often the fleet stream sends the rows changed.
const liveInterval = 500 * time.Millisecond

// maxLiveRows is the most rows one fleet update carries; more changed
// rows make it say "reload" (the page reads its page again).
const maxLiveRows = 2000

// retryFollow is how long Run waits before following the log again
// after a failure.
const retryFollow = 5 * time.Second

// Run builds the fleet index and follows the log until ctx ends, when
// it also ends the open streams. A failure to read the log is logged
// and retried: the dashboard never stops the node. It returns nil.
func (d *Dashboard) Run(ctx context.Context) error {
	defer close(d.done)
	go d.broadcast(ctx)
	for {
		err := d.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		d.log.Warn("dashboard: following the log failed; retrying", "err", err, "in", retryFollow)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retryFollow):
		}
		d.ready.Store(false)
		d.fleet.reset()
	}
}

// broadcast sends the changed fleet rows to the fleet streams.
func (d *Dashboard) broadcast(ctx context.Context) {
	t := time.NewTicker(liveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !d.hub.fleetWatched() {
			continue
		}
		rows, reload := d.fleet.takeDirty(time.Now().UnixMilli(), maxLiveRows)
		switch {
		case reload:
			d.hub.fleetSend("reload", map[string]bool{"reload": true})
		case len(rows) > 0:
			d.hub.fleetSend("rows", rows)
		}
	}
}

// Ready says the fleet index is built.
func (d *Dashboard) Ready() bool { return d.ready.Load() }

// Static serves the pages: GET / and /assets/... (no token needed: they
// hold no data).
func Static() http.Handler {
	sub, _ := fs.Sub(static, "static")
	files := http.FileServerFS(sub)
	mux := http.NewServeMux()
	mux.Handle("GET /assets/", http.StripPrefix("/assets", noCache(files)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:")
		http.ServeFileFS(w, r, sub, "index.html")
	})
	return mux
}

func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// Handler serves the dashboard's API (mount it under /api/dashboard/,
// behind the API token):
//
//	GET /api/dashboard/fleet          a page of things (FleetQuery)
//	GET /api/dashboard/live[?thing=]  server-sent events: fleet rows, or one thing's events
//	GET /api/dashboard/things/{thing} a thing's row, fields, shadows, commands, recent events
//	GET /api/dashboard/things/{thing}/series?field=&minutes=  a field's points, PEWMA band and anomalies
//	GET /api/dashboard/rules/files    the loaded rule files' text
//	GET /api/dashboard/dlq            the newest dead letters
func (d *Dashboard) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/dashboard/fleet", d.serveFleet)
	mux.HandleFunc("GET /api/dashboard/live", d.serveLive)
	mux.HandleFunc("GET /api/dashboard/things/{thing}", d.serveThing)
	mux.HandleFunc("GET /api/dashboard/things/{thing}/series", d.serveSeries)
	mux.HandleFunc("GET /api/dashboard/rules/files", d.serveRuleFiles)
	mux.HandleFunc("GET /api/dashboard/dlq", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"records": d.dlq.newest(dlqKeep)})
	})
	return mux
}

func (d *Dashboard) serveFleet(w http.ResponseWriter, r *http.Request) {
	q, err := ParseFleetQuery(r.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	page := d.fleet.list(q, time.Now().UnixMilli())
	page.Ready = d.Ready()
	writeJSON(w, http.StatusOK, page)
}

// maxRuleFile bounds the text shown of one rule file.
const maxRuleFile = 256 << 10

// RuleFile is a rule file's text.
type RuleFile struct {
	Path string `json:"path"`
	Text string `json:"text"`
}

// serveRuleFiles answers the text of the files the rules processor
// loaded (only those: the list comes from its status, not the request).
func (d *Dashboard) serveRuleFiles(w http.ResponseWriter, _ *http.Request) {
	files := []RuleFile{}
	if d.opts.RuleFiles != nil {
		for _, p := range d.opts.RuleFiles() {
			b, err := readHead(p, maxRuleFile)
			if err != nil {
				files = append(files, RuleFile{Path: p, Text: "(" + err.Error() + ")"})
				continue
			}
			files = append(files, RuleFile{Path: p, Text: strings.ToValidUTF8(string(b), "\uFFFD")})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"files": files})
}

// readHead reads at most n bytes of the file at path.
func readHead(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// writeJSON writes v as the JSON answer with code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes an error document in the API's shape.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]any{"code": code, "message": msg, "timestamp": time.Now().Unix()})
}

// queryError answers a failed ClickHouse read: 503 without ClickHouse,
// 502 otherwise.
func queryError(w http.ResponseWriter, err error) {
	code := http.StatusBadGateway
	if errors.Is(err, ErrNoClickHouse) {
		code = http.StatusServiceUnavailable
	}
	writeError(w, code, err.Error())
}
