// Package admin is the registry's HTTP API: things, certificates, CA
// certificates, policies and tokens, under /api/registry/. Every
// operation is the registry's (ingest/registry), so it goes through the
// log like the CLI's (which calls this API); answers are the entities'
// JSON with AWS IoT's field names, errors the API's error document with
// the status AWS's exception maps to.
//
// Authentication is the caller's (apiauth.Require around Handler).
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/ingest/registry"
)

// Prefix is where Handler serves.
const Prefix = "/api/registry/"

// Options configure Handler.
type Options struct {
	// Logger receives failed operations' errors (default
	// slog.Default()).
	Logger *slog.Logger
	// Timeout bounds one operation (default 30s).
	Timeout time.Duration
}

// Handler serves the registry's operations under Prefix. ca issues
// certificates (POST /api/registry/certificates); nil refuses that one
// operation.
func Handler(reg *registry.Registry, ca *pki.CA, o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	a := &api{reg: reg, ca: ca, opts: o}
	mux := http.NewServeMux()
	route := func(pattern string, fn func(*http.Request) (int, any, error)) {
		mux.Handle(pattern, a.serve(fn))
	}
	route("GET /api/registry/things", a.listThings)
	route("POST /api/registry/things", a.createThing)
	route("GET /api/registry/things/{name}", a.describeThing)
	route("PATCH /api/registry/things/{name}", a.updateThing)
	route("DELETE /api/registry/things/{name}", a.deleteThing)
	route("PUT /api/registry/things/{name}/principals/{principal}", a.attachThing)
	route("DELETE /api/registry/things/{name}/principals/{principal}", a.detachThing)

	route("GET /api/registry/certificates", a.listCertificates)
	route("POST /api/registry/certificates", a.createCertificate)
	route("POST /api/registry/certificates/register", a.registerCertificate)
	route("GET /api/registry/certificates/{id}", a.describeCertificate)
	route("PUT /api/registry/certificates/{id}/status", a.setCertificateStatus)
	route("DELETE /api/registry/certificates/{id}", a.deleteCertificate)

	route("GET /api/registry/cas", a.listCAs)
	route("POST /api/registry/cas", a.registerCA)
	route("GET /api/registry/cas/{id}", a.describeCA)
	route("PATCH /api/registry/cas/{id}", a.updateCA)
	route("DELETE /api/registry/cas/{id}", a.deleteCA)

	route("GET /api/registry/policies", a.listPolicies)
	route("POST /api/registry/policies", a.createPolicy)
	route("GET /api/registry/policies/{name}", a.getPolicy)
	route("PUT /api/registry/policies/{name}", a.updatePolicy)
	route("DELETE /api/registry/policies/{name}", a.deletePolicy)
	route("PUT /api/registry/policies/{name}/principals/{principal}", a.attachPolicy)
	route("DELETE /api/registry/policies/{name}/principals/{principal}", a.detachPolicy)

	route("GET /api/registry/tokens", a.listTokens)
	route("POST /api/registry/tokens", a.createToken)
	route("DELETE /api/registry/tokens/{id}", a.revokeToken)
	route("/api/registry/", func(r *http.Request) (int, any, error) {
		return 0, nil, fmt.Errorf("%w: no registry operation %s %s", errNoRoute, r.Method, r.URL.Path)
	})
	return mux
}

type api struct {
	reg  *registry.Registry
	ca   *pki.CA
	opts Options
}

// errNoRoute: no operation has this method and path (404).
var errNoRoute = errors.New("not found")

// maxBody is the largest request body (a policy document is at most
// 2048 characters, a PEM chain a few KiB).
const maxBody = 256 << 10

// serve adapts an operation: it bounds it in time, writes its answer as
// JSON with its status (200 when 0), or its error as an error document.
func (a *api) serve(fn func(*http.Request) (int, any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), a.opts.Timeout)
		defer cancel()
		code, out, err := fn(r.WithContext(ctx))
		if err != nil {
			code = statusOf(err)
			if code >= 500 {
				a.opts.Logger.Error("registry operation failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			writeJSON(w, code, errorDoc{Code: code, Message: err.Error(), Timestamp: time.Now().Unix()})
			return
		}
		if code == 0 {
			code = http.StatusOK
		}
		if out == nil {
			w.WriteHeader(code)
			return
		}
		writeJSON(w, code, out)
	})
}

// errorDoc is the API's error document (the shape of AWS IoT's shadow
// errors).
type errorDoc struct {
	Code      int    `json:"code"`
	Message   string `json:"message"`
	Timestamp int64  `json:"timestamp"`
}

// statusOf maps a registry error to its HTTP status (AWS's exceptions).
func statusOf(err error) int {
	switch {
	case errors.Is(err, errBadRequest), errors.Is(err, registry.ErrInvalid), errors.Is(err, pki.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, registry.ErrNotFound), errors.Is(err, errNoRoute):
		return http.StatusNotFound
	case errors.Is(err, registry.ErrAlreadyExists), errors.Is(err, registry.ErrVersionConflict), errors.Is(err, registry.ErrDeleteConflict):
		return http.StatusConflict
	case errors.Is(err, registry.ErrCertificateState):
		return http.StatusNotAcceptable
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	case errors.Is(err, registry.ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// errBadRequest: the request itself is malformed (400).
var errBadRequest = errors.New("bad request")

// decode reads r's JSON body into v (unknown fields are an error).
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: the body is empty: want a JSON object", errBadRequest)
		}
		return fmt.Errorf("%w: body: %w", errBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: body: one JSON object, nothing after it", errBadRequest)
	}
	return nil
}

// Page is one page of a list: Next, when set, is the ?after= of the
// next page.
type Page[T any] struct {
	Items []T    `json:"items"`
	Next  string `json:"next,omitempty"`
}

// defaultLimit and maxLimit bound a list page.
const defaultLimit, maxLimit = 100, 1000

// listOptions reads ?after= and ?limit=.
func listOptions(r *http.Request) (registry.ListOptions, error) {
	o := registry.ListOptions{After: r.URL.Query().Get("after"), Limit: defaultLimit}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxLimit {
			return o, fmt.Errorf("%w: limit %q: want 1 to %d", errBadRequest, s, maxLimit)
		}
		o.Limit = n
	}
	return o, nil
}

// page lists with list and names the next page by key.
func page[T any](r *http.Request, list func(registry.ListOptions) ([]T, error), key func(T) string) (int, any, error) {
	o, err := listOptions(r)
	if err != nil {
		return 0, nil, err
	}
	items, err := list(o)
	if err != nil {
		return 0, nil, err
	}
	p := Page[T]{Items: items}
	if p.Items == nil {
		p.Items = []T{}
	}
	if len(items) == o.Limit {
		p.Next = key(items[len(items)-1])
	}
	return 0, p, nil
}

// expectedVersion reads ?expectedVersion= (0 when absent).
func expectedVersion(r *http.Request) (int64, error) {
	s := r.URL.Query().Get("expectedVersion")
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("%w: expectedVersion %q: want a version (1 or more)", errBadRequest, s)
	}
	return v, nil
}

// boolQuery reads a boolean query parameter (false when absent).
func boolQuery(r *http.Request, name string) (bool, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%w: %s %q: want true or false", errBadRequest, name, s)
	}
	return b, nil
}
