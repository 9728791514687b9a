package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/iotpipe/iotpipe/ingest/policy"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/segmentio/encoding/json"
)

// AuthorizerOptions configures the custom authorizer: an HTTP endpoint
// that decides the tokens that are not registry tokens, answering as an
// AWS IoT custom authorizer's Lambda function does.
type AuthorizerOptions struct {
	// URL is the endpoint, called with POST and a JSON body in AWS's
	// shape ({"token", "signatureVerified", "protocols", "protocolData":
	// {"tls", "http", "mqtt": {"username", "password" (base64),
	// "clientId"}}, "connectionMetadata": {"id"}}); "" for none. It
	// answers 200 with {"isAuthenticated", "principalId",
	// "policyDocuments" (policy documents, as strings or objects),
	// "disconnectAfterInSeconds", "refreshAfterInSeconds"}.
	URL string
	// Timeout bounds one call (default 5s). A call that times out,
	// fails or answers anything else refuses the connection (fail
	// closed).
	Timeout time.Duration
	// CacheSize bounds the answers kept for their refresh period
	// (default 10000).
	CacheSize int
}

func (o *AuthorizerOptions) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 10000
	}
}

// MaxAuthorizerPolicies is how many policy documents an answer may
// hold (AWS's limit).
const MaxAuthorizerPolicies = 10

// authorizerRequest is the body sent to the custom authorizer.
type authorizerRequest struct {
	Token              string               `json:"token"`
	SignatureVerified  bool                 `json:"signatureVerified"`
	Protocols          []string             `json:"protocols"`
	ProtocolData       authorizerProtocols  `json:"protocolData"`
	ConnectionMetadata authorizerConnection `json:"connectionMetadata"`
}

type authorizerProtocols struct {
	TLS  *authorizerTLS  `json:"tls,omitempty"`
	HTTP *authorizerHTTP `json:"http,omitempty"`
	MQTT *authorizerMQTT `json:"mqtt,omitempty"`
}

type authorizerTLS struct {
	ServerName string `json:"serverName"`
}

type authorizerHTTP struct {
	Headers     map[string]string `json:"headers"`
	QueryString string            `json:"queryString"`
}

type authorizerMQTT struct {
	Username string `json:"username,omitempty"`
	Password []byte `json:"password,omitempty"` // base64 in JSON, as AWS sends it
	ClientID string `json:"clientId"`
}

type authorizerConnection struct {
	ID string `json:"id"`
}

// authorizerResponse is the custom authorizer's answer.
type authorizerResponse struct {
	IsAuthenticated          bool              `json:"isAuthenticated"`
	PrincipalID              string            `json:"principalId"`
	PolicyDocuments          []json.RawMessage `json:"policyDocuments"`
	DisconnectAfterInSeconds int64             `json:"disconnectAfterInSeconds"`
	RefreshAfterInSeconds    int64             `json:"refreshAfterInSeconds"`
}

// authorization is a checked answer: an allowed principal with its
// policies parsed, or a denial.
type authorization struct {
	allowed         bool
	principal       string
	policies        []*policy.Policy
	disconnectAfter time.Duration // 0: none
	refreshAfter    time.Duration // 0: not cached, not refreshed
}

// authorizer calls the custom authorizer and keeps its allowing answers
// for their refresh period.
type authorizer struct {
	opts    AuthorizerOptions
	client  *http.Client
	metrics *metrics
	mu      sync.Mutex
	cache   map[[32]byte]cachedAuthorization
}

type cachedAuthorization struct {
	a       *authorization
	expires time.Time
}

func newAuthorizer(o AuthorizerOptions, m *metrics) *authorizer {
	return &authorizer{opts: o, client: &http.Client{Timeout: o.Timeout}, metrics: m, cache: map[[32]byte]cachedAuthorization{}}
}

// cacheKey keys an answer by what the request says of the client: the
// token, the user name and the client id (the answer may depend on any).
func cacheKey(req *authorizerRequest) [32]byte {
	h := sha256.New()
	h.Write([]byte(req.Token))
	h.Write([]byte{0})
	if m := req.ProtocolData.MQTT; m != nil {
		h.Write([]byte(m.Username))
		h.Write([]byte{0})
		h.Write([]byte(m.ClientID))
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// decide answers req from the cache, or asks the authorizer (fresh
// skips the cache: a live session's refresh).
func (z *authorizer) decide(ctx context.Context, req *authorizerRequest, fresh bool) (*authorization, error) {
	key := cacheKey(req)
	now := time.Now()
	if !fresh {
		z.mu.Lock()
		c, ok := z.cache[key]
		z.mu.Unlock()
		if ok && now.Before(c.expires) {
			z.metrics.authorizer.WithLabelValues("cached").Inc()
			return c.a, nil
		}
	}
	a, err := z.call(ctx, req)
	switch {
	case err != nil:
		z.metrics.authorizer.WithLabelValues("error").Inc()
		return nil, err
	case !a.allowed:
		z.metrics.authorizer.WithLabelValues("deny").Inc()
		return a, nil
	}
	z.metrics.authorizer.WithLabelValues("allow").Inc()
	if a.refreshAfter > 0 {
		z.mu.Lock()
		if len(z.cache) >= z.opts.CacheSize {
			for k, c := range z.cache {
				if !now.Before(c.expires) || len(z.cache) >= z.opts.CacheSize {
					delete(z.cache, k)
				}
			}
		}
		z.cache[key] = cachedAuthorization{a, now.Add(a.refreshAfter)}
		z.mu.Unlock()
	}
	return a, nil
}

// call makes one call within the timeout and checks the answer.
func (z *authorizer) call(ctx context.Context, req *authorizerRequest) (*authorization, error) {
	ctx, cancel := context.WithTimeout(ctx, z.opts.Timeout)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, z.opts.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := z.client.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("custom authorizer %s: %w", z.opts.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("custom authorizer %s: read answer: %w", z.opts.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("custom authorizer %s: status %s", z.opts.URL, resp.Status)
	}
	return parseAuthorization(data)
}

// parseAuthorization checks an answer as AWS does: an authenticated
// principal is 1 to 128 letters and digits, with at most
// MaxAuthorizerPolicies policy documents that parse; durations are not
// negative.
func parseAuthorization(data []byte) (*authorization, error) {
	var r authorizerResponse
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("custom authorizer answer: %w", err)
	}
	if !r.IsAuthenticated {
		return &authorization{}, nil
	}
	if err := checkAuthorizerPrincipal(r.PrincipalID); err != nil {
		return nil, err
	}
	if len(r.PolicyDocuments) > MaxAuthorizerPolicies {
		return nil, fmt.Errorf("custom authorizer answer: %d policy documents, at most %d", len(r.PolicyDocuments), MaxAuthorizerPolicies)
	}
	if r.DisconnectAfterInSeconds < 0 || r.RefreshAfterInSeconds < 0 {
		return nil, errors.New("custom authorizer answer: negative disconnectAfterInSeconds or refreshAfterInSeconds")
	}
	a := &authorization{allowed: true, principal: r.PrincipalID,
		disconnectAfter: time.Duration(r.DisconnectAfterInSeconds) * time.Second,
		refreshAfter:    time.Duration(r.RefreshAfterInSeconds) * time.Second}
	for i, raw := range r.PolicyDocuments {
		doc := []byte(raw)
		var s string
		if json.Unmarshal(raw, &s) == nil { // a document given as a JSON string
			doc = []byte(s)
		}
		p, err := policy.Parse(fmt.Sprintf("authorizer:%s#%d", r.PrincipalID, i), doc)
		if err != nil {
			return nil, fmt.Errorf("custom authorizer answer: %w", err)
		}
		a.policies = append(a.policies, p)
	}
	return a, nil
}

func checkAuthorizerPrincipal(p string) error {
	if len(p) == 0 || len(p) > 128 {
		return fmt.Errorf("custom authorizer answer: principalId %q: 1 to 128 letters and digits", p)
	}
	for _, c := range []byte(p) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return fmt.Errorf("custom authorizer answer: principalId %q: 1 to 128 letters and digits", p)
		}
	}
	return nil
}

// authorizerRequestFor builds the request for a CONNECT's credentials.
func authorizerRequestFor(cl *mqtt.Client, cr credentials) *authorizerRequest {
	req := &authorizerRequest{Token: cr.secret, ConnectionMetadata: authorizerConnection{ID: newSessionID()}}
	if cr.secure {
		req.Protocols = append(req.Protocols, "tls")
		req.ProtocolData.TLS = &authorizerTLS{ServerName: cr.serverName}
	}
	if cr.ws != nil {
		req.Protocols = append(req.Protocols, "http")
		h := &authorizerHTTP{Headers: make(map[string]string, len(cr.ws.header)), QueryString: cr.ws.query}
		for k, v := range cr.ws.header {
			if len(v) > 0 {
				h.Headers[k] = v[0]
			}
		}
		req.ProtocolData.HTTP = h
	}
	req.Protocols = append(req.Protocols, "mqtt")
	req.ProtocolData.MQTT = &authorizerMQTT{Username: cr.username, Password: cr.password, ClientID: cl.ID}
	return req
}

// byAuthorizer authenticates a token with the custom authorizer: its
// principal and its policies for this connection.
func (a *auth) byAuthorizer(cl *mqtt.Client, cr credentials) (*identity, *authRefusal) {
	req := authorizerRequestFor(cl, cr)
	az, err := a.authz.decide(a.s.ctx, req, false)
	if err != nil {
		return nil, refuse(refusedAuthorizerError, "%v", err)
	}
	if !az.allowed {
		return nil, refuse(refusedAuthorizerDeny, "the custom authorizer did not authenticate the token")
	}
	id := &identity{method: methodAuthorizer, principal: az.principal}
	id.ctx.ClientID, id.ctx.SourceIP = cl.ID, remoteAddr(cl)
	id.decider.Store(policy.Compile(az.policies, id.ctx))
	if az.disconnectAfter > 0 || az.refreshAfter > 0 {
		id.session = &authorizerSession{req: req, az: az}
	}
	return id, nil
}

// authorizerSession is the custom authorizer's hold on a live
// connection: it is ended once disconnectAfterInSeconds passed, and
// asked again every refreshAfterInSeconds (a denial or a failure ends
// it, an allowing answer replaces its policies).
type authorizerSession struct {
	req     *authorizerRequest
	az      *authorization
	mu      sync.Mutex
	end     *time.Timer // at disconnectAfterInSeconds
	next    *time.Timer // the next refresh
	stopped bool
}

// start arms the timers once the session is established.
func (as *authorizerSession) start(a *auth, cl *mqtt.Client, id *identity) {
	as.mu.Lock()
	defer as.mu.Unlock()
	if as.stopped {
		return
	}
	if d := as.az.disconnectAfter; d > 0 {
		as.end = time.AfterFunc(d, func() {
			a.endSession(cl, "CUSTOMAUTH_TTL_EXPIRATION", "custom authorizer disconnectAfterInSeconds passed")
		})
	}
	if d := as.az.refreshAfter; d > 0 {
		as.next = time.AfterFunc(d, func() { as.refresh(a, cl, id) })
	}
}

// refresh asks the authorizer again for a live session.
func (as *authorizerSession) refresh(a *auth, cl *mqtt.Client, id *identity) {
	az, err := a.authz.decide(a.s.ctx, as.req, true)
	switch {
	case err != nil:
		a.s.opts.Logger.Warn("custom authorizer failed on a live session's refresh: ending it", "client", cl.ID, "err", err)
		a.endSession(cl, "AUTH_ERROR", "custom authorizer failed on refresh")
		return
	case !az.allowed:
		a.endSession(cl, "AUTH_ERROR", "custom authorizer denied on refresh")
		return
	}
	id.decider.Store(policy.Compile(az.policies, id.ctx))
	as.mu.Lock()
	defer as.mu.Unlock()
	if !as.stopped && az.refreshAfter > 0 {
		as.next = time.AfterFunc(az.refreshAfter, func() { as.refresh(a, cl, id) })
	}
}

// stop disarms the timers (the connection ended).
func (as *authorizerSession) stop() {
	as.mu.Lock()
	defer as.mu.Unlock()
	as.stopped = true
	for _, t := range []*time.Timer{as.end, as.next} {
		if t != nil {
			t.Stop()
		}
	}
}
