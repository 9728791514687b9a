package ingest

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// Requests the shadow REST endpoint refuses before they reach the log
// get the status and an AWS-shaped error document.
func TestShadowHTTPRefusals(t *testing.T) {
	r := newRig(t, Options{})
	tests := []struct {
		name, method string
		thing        string // the thing, and ?query when there is one
		dev          bool
		code         int
	}{
		{"anonymous without --dev", http.MethodGet, "lamp-1", false, http.StatusUnauthorized},
		{"wildcard in the thing", http.MethodGet, "lamp+1", true, http.StatusBadRequest},
		{"method", http.MethodPut, "lamp-1", true, http.StatusMethodNotAllowed},
		{"NUL in the thing", http.MethodGet, "lamp\x001", true, http.StatusBadRequest},
		{"slash in the shadow name", http.MethodGet, "lamp-1?name=a/b", true, http.StatusBadRequest},
		{"thing name over 128 bytes", http.MethodGet, strings.Repeat("n", 129), true, http.StatusBadRequest},
		{"topic over 256 bytes", http.MethodGet, "lamp-1?name=" + strings.Repeat("s", 250), true, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.srv.opts.Dev = tt.dev
			thing, query, _ := strings.Cut(tt.thing, "?")
			req := httptest.NewRequest(tt.method, "/things/"+url.PathEscape(thing)+"/shadow?"+query, strings.NewReader(`{"state":{}}`))
			req.SetPathValue("thing", thing)
			w := httptest.NewRecorder()
			r.srv.ShadowHTTP(w, req)
			expectAWSError(t, w, tt.code)
		})
	}
	records := r.readAll(t, r.srv.opts.Topics.Events, 0)
	if len(records) != 0 {
		t.Fatalf("%d records reached the log", len(records))
	}
}
