package main

import (
	"github.com/iotpipe/iotpipe/ingest/apiauth"
	"github.com/iotpipe/iotpipe/web"
)

// startDashboard serves the dashboard on the HTTP API's port: its pages
// at GET / and /assets/ without a token (they hold no data; the page
// asks for the token), its endpoints under /api/dashboard/ behind the
// token like the rest of the API (iotpipe:Read on api/dashboard). Its
// ClickHouse reads go through this node's POST /api/sql handler (the
// restricted user), when the node has one.
func (n *node) startDashboard() {
	opts := web.Options{Topics: n.lg.Topics(), Query: web.SQLEndpoint{Handler: n.sql}, Logger: n.log.With("component", "dashboard")}
	opts.Log.Client = n.lg.Client
	if n.rules != nil {
		rp := n.rules
		opts.RuleFiles = func() []string {
			var paths []string
			for _, f := range rp.Status().Files {
				paths = append(paths, f.Path)
			}
			return paths
		}
	}
	d := web.New(opts)
	static := web.Static()
	n.mux.Handle("GET /{$}", static)
	n.mux.Handle("GET /assets/", static)
	n.route("/api/dashboard/", apiauth.ActionRead, apiauth.Fixed("api/dashboard"), d.Handler())
	// In the accept phase: the open streams end when the node stops
	// taking work, so they do not hold up the HTTP server's shutdown.
	n.lc.run(acceptPhase, "dashboard", d.Run)
}
