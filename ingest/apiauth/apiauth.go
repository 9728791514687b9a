// Package apiauth authenticates HTTP API requests with registry tokens
// (Authorization: Bearer <secret>) and authorizes them with the policies
// attached to the token's principal, through the same evaluator the MQTT
// front uses (ingest/policy).
//
// Data-plane routes are checked with AWS IoT's actions (iot:Publish on
// topic/<topic>, iot:GetThingShadow on thing/<thing>, ...); the rest of
// the API with iotpipe's own: ActionRead, ActionQuery and ActionAdmin,
// on the resource api/<area> (api/rules, api/sql, api/registry, ...).
package apiauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/iotpipe/iotpipe/ingest/policy"
	"github.com/iotpipe/iotpipe/ingest/registry"
)

// iotpipe's own actions, checked against api/<area>.
const (
	// ActionRead reads the API's state: rules, things' last-seen
	// state, command status, the log's events, replays, metrics.
	ActionRead = "iotpipe:Read"
	// ActionQuery runs SQL against ClickHouse (api/sql).
	ActionQuery = "iotpipe:Query"
	// ActionAdmin manages the registry (api/registry) and reads Go
	// profiles (api/debug).
	ActionAdmin = "iotpipe:Admin"
)

// Registry is what the authenticator reads: tokens, the policies and
// things attached to their principals, and changes to them.
type Registry interface {
	TokenBySecret(secret string) (*registry.Token, error)
	PrincipalPolicies(principal string) ([]*registry.Policy, error)
	PrincipalThings(principal string) ([]string, error)
	Thing(name string) (*registry.Thing, error)
	Watch(fn func(registry.Change)) (cancel func())
}

// Options configure an Authenticator.
type Options struct {
	// Logger receives refusals (rate-limited) and policy warnings.
	// Default slog.Default().
	Logger *slog.Logger
	// MaxCached is how many authenticated tokens are remembered (their
	// compiled policies); default 10,000. The cache empties on any
	// registry change.
	MaxCached int
}

// Principal is an authenticated API caller.
type Principal struct {
	// Name is the token's principal.
	Name string
	// TokenID is the id of the token it authenticated with.
	TokenID string
	// Thing is the thing attached to the principal when exactly one is
	// (${iot:Connection.Thing.*} in its policies), "" otherwise.
	Thing string
	d     *policy.Decider
}

// Allow reports whether the principal's policies allow action on
// resource (short form: topic/a/b, thing/name, api/sql).
func (p *Principal) Allow(action, resource string) bool { return p.d.Allow(action, resource) }

// Authenticator checks API requests' bearer tokens. Safe for concurrent
// use.
type Authenticator struct {
	reg    Registry
	opts   Options
	cancel func()

	mu    sync.Mutex
	cache map[string]*Principal // by the secret's SHA-256

	refused  *prometheus.CounterVec
	lastWarn sync.Map // reason -> time.Time of the last log line
}

// The errors of Authenticate.
var (
	// ErrNoToken: the request has no bearer token.
	ErrNoToken = errors.New("no bearer token (Authorization: Bearer <token>; iotpipe tokens create makes one)")
	// ErrBadToken: the token is not a registered token's secret
	// (unknown, revoked or malformed).
	ErrBadToken = errors.New("unknown or revoked token")
)

// New returns an Authenticator over reg; Close stops its watch.
func New(reg Registry, o Options) *Authenticator {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxCached <= 0 {
		o.MaxCached = 10_000
	}
	a := &Authenticator{reg: reg, opts: o, cache: map[string]*Principal{},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_api_auth_refused_total",
			Help: "HTTP API requests refused, by reason: no_token, bad_token (unknown or revoked), denied (the principal's policies do not allow it), error (the registry could not answer).",
		}, []string{"reason"}),
	}
	// Any change may touch a token, a policy or an attachment: forget
	// every decision (changes are rare; a token's next request compiles
	// its policies again).
	a.cancel = reg.Watch(func(registry.Change) {
		a.mu.Lock()
		clear(a.cache)
		a.mu.Unlock()
	})
	return a
}

// Close stops following registry changes.
func (a *Authenticator) Close() { a.cancel() }

// Collectors returns the authenticator's Prometheus collectors.
func (a *Authenticator) Collectors() []prometheus.Collector {
	return []prometheus.Collector{a.refused}
}

// Authenticate returns the principal of r's bearer token.
func (a *Authenticator) Authenticate(r *http.Request) (*Principal, error) {
	secret, ok := bearer(r)
	if !ok {
		return nil, ErrNoToken
	}
	sum := sha256.Sum256([]byte(secret))
	key := hex.EncodeToString(sum[:])
	a.mu.Lock()
	p := a.cache[key]
	a.mu.Unlock()
	if p != nil {
		return p, nil
	}
	tok, err := a.reg.TokenBySecret(secret)
	if errors.Is(err, registry.ErrNotFound) || errors.Is(err, registry.ErrInvalid) {
		return nil, ErrBadToken
	}
	if err != nil {
		return nil, fmt.Errorf("look up token: %w", err)
	}
	p, err = a.principal(tok)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	if len(a.cache) >= a.opts.MaxCached {
		clear(a.cache)
	}
	a.cache[key] = p
	a.mu.Unlock()
	return p, nil
}

// principal compiles tok's principal's policies.
func (a *Authenticator) principal(tok *registry.Token) (*Principal, error) {
	p := &Principal{Name: tok.Principal, TokenID: tok.ID}
	docs, err := a.reg.PrincipalPolicies(tok.Principal)
	if err != nil {
		return nil, fmt.Errorf("policies of %s: %w", tok.Principal, err)
	}
	var pols []*policy.Policy
	for _, d := range docs {
		pol, err := policy.Parse(d.Name, d.Document)
		if err != nil {
			// The registry checked it when it was written: a document
			// that no longer parses allows nothing.
			a.opts.Logger.Warn("API token's policy does not parse; it allows nothing", "principal", tok.Principal, "policy", d.Name, "err", err)
			continue
		}
		pols = append(pols, pol)
	}
	var pc policy.Context
	if things, err := a.reg.PrincipalThings(tok.Principal); err == nil && len(things) == 1 {
		if th, err := a.reg.Thing(things[0]); err == nil {
			p.Thing = th.Name
			pc.Thing = &policy.Thing{Name: th.Name, TypeName: th.TypeName, Attributes: th.Attributes}
		}
	}
	p.d = policy.Compile(pols, pc)
	return p, nil
}

// bearer returns r's bearer token.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Resource names what a request is checked against.
type Resource func(r *http.Request) string

// Fixed is a Resource that is always res.
func Fixed(res string) Resource { return func(*http.Request) string { return res } }

// Require serves h to requests whose principal may do action on the
// resource res names; others get 401 (no or a bad token, with
// WWW-Authenticate) or 403 (denied), as an error document. The
// principal is in the request's context (FromContext).
func (a *Authenticator) Require(action string, res Resource, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.Authenticate(r)
		switch {
		case errors.Is(err, ErrNoToken) || errors.Is(err, ErrBadToken):
			reason := "no_token"
			if errors.Is(err, ErrBadToken) {
				reason = "bad_token"
			}
			a.refuse(r, reason, err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="iotpipe"`)
			writeError(w, http.StatusUnauthorized, err.Error())
			return
		case err != nil:
			a.refuse(r, "error", err)
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		resource := res(r)
		if !p.Allow(action, resource) {
			a.refuse(r, "denied", fmt.Errorf("principal %s may not %s on %s", p.Name, action, resource))
			writeError(w, http.StatusForbidden, fmt.Sprintf("principal %s is not allowed %s on %s (attach a policy that allows it)", p.Name, action, resource))
			return
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// refuse counts and logs (at most once a minute per reason) a refusal.
func (a *Authenticator) refuse(r *http.Request, reason string, err error) {
	a.refused.WithLabelValues(reason).Inc()
	now := time.Now()
	if last, ok := a.lastWarn.Load(reason); ok && now.Sub(last.(time.Time)) < time.Minute {
		return
	}
	a.lastWarn.Store(reason, now)
	a.opts.Logger.Warn("HTTP API request refused (more of this reason in the next minute are only counted: iotpipe_api_auth_refused_total)",
		"reason", reason, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "err", err)
}

type principalKey struct{}

// FromContext returns the principal Require put in ctx, nil when none.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// writeError writes the API's error document (the shape of AWS IoT's
// shadow errors).
func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Code      int    `json:"code"`
		Message   string `json:"message"`
		Timestamp int64  `json:"timestamp"`
	}{code, msg, time.Now().Unix()})
}
