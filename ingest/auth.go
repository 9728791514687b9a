package ingest

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/ingest/policy"
	"github.com/iotpipe/iotpipe/ingest/registry"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Registry is what the MQTT front needs of the identity registry
// (*registry.Registry): the lookups of a CONNECT, just-in-time
// registration, and the changes that end sessions or change what they
// may do.
type Registry interface {
	// Ready is closed once the registry's view caught up with the log.
	Ready() <-chan struct{}
	Certificate(id string) (*registry.Certificate, error)
	RegisterJIT(ctx context.Context, chain []*x509.Certificate) (*registry.JITResult, error)
	TokenBySecret(secret string) (*registry.Token, error)
	Token(id string) (*registry.Token, error)
	Thing(name string) (*registry.Thing, error)
	PrincipalThings(principal string) ([]string, error)
	PrincipalPolicies(principal string) ([]*registry.Policy, error)
	Watch(fn func(registry.Change)) (cancel func())
}

// The ways a connection authenticates (iotpipe_ingest_authenticated_total
// {method}).
const (
	methodCertificate = "certificate"
	methodToken       = "token"
	methodAuthorizer  = "authorizer"
	methodAnonymous   = "anonymous" // Dev
)

// identity is who a connection authenticated as, decided at its CONNECT:
// its principal, the thing it is attached to, and its policies compiled
// for it. It hangs on the connection (topicWatch), so the hot path finds
// it without a map.
type identity struct {
	method    string
	principal string
	// thing is the registry thing the connection is attached to ("" for
	// none): its record key and the iot.thing header, fixed for the
	// connection's life.
	thing   string
	certID  string // method certificate
	tokenID string // method token
	// ctx is what the policies were compiled with; policies names the
	// registry policies compiled (both for compiling again when they
	// change).
	ctx      policy.Context
	policies []string
	// decider answers what the connection may do; nil (Dev) allows
	// everything.
	decider atomic.Pointer[policy.Decider]
	// subs are the decisions on the filters of the SUBSCRIBE being
	// processed (see authHook.OnSubscribe).
	subs atomic.Pointer[[]subDecision]
	// session is the custom authorizer's hold on the connection.
	session *authorizerSession
	// gen is the auth's count of registry changes when the CONNECT was
	// authenticated (see auth.established).
	gen uint64
}

// identityOf returns the identity of cl's connection, nil when it has
// none (not authenticated, or not one of the listeners' connections).
func identityOf(cl *mqtt.Client) *identity {
	if w, ok := cl.Net.Conn.(*topicWatch); ok {
		return w.ident.Load()
	}
	return nil
}

// refusalReason is why a CONNECT is refused: the reason label of
// iotpipe_ingest_auth_refused_total and of the log line, and the CONNACK
// codes (MQTT 5; 3.1.1).
type refusalReason struct {
	label  string
	v5, v3 byte
}

var (
	// Bad or unknown credentials: 0x86 Bad User Name or Password (3.1.1:
	// 0x04).
	refusedNoCredentials = refusalReason{"no_credentials", 0x86, 0x04}
	refusedExpired       = refusalReason{"expired", 0x86, 0x04}
	refusedInvalidCert   = refusalReason{"invalid_certificate", 0x86, 0x04}
	refusedUnknownCert   = refusalReason{"unknown_certificate", 0x86, 0x04}
	refusedUntrustedCA   = refusalReason{"untrusted_ca", 0x86, 0x04}
	refusedBadToken      = refusalReason{"bad_token", 0x86, 0x04}
	// Known but not allowed: 0x87 Not Authorized (3.1.1: 0x05).
	refusedInactive       = refusalReason{"inactive", 0x87, 0x05}
	refusedRevoked        = refusalReason{"revoked", 0x87, 0x05}
	refusedPending        = refusalReason{"pending_activation", 0x87, 0x05}
	refusedConnectDenied  = refusalReason{"connect_denied", 0x87, 0x05}
	refusedWillDenied     = refusalReason{"will_denied", 0x87, 0x05}
	refusedAuthorizerDeny = refusalReason{"authorizer_denied", 0x87, 0x05}
	refusedPlainListener  = refusalReason{"plain_listener", 0x87, 0x05}
	refusedNotConfigured  = refusalReason{"not_configured", 0x87, 0x05}
	// The server cannot decide now: 0x88 Server Unavailable (3.1.1:
	// 0x03); the device may retry.
	refusedNotReady        = refusalReason{"registry_not_ready", 0x88, 0x03}
	refusedRegistryError   = refusalReason{"registry_error", 0x88, 0x03}
	refusedBadPolicy       = refusalReason{"bad_policy", 0x88, 0x03}
	refusedAuthorizerError = refusalReason{"authorizer_error", 0x88, 0x03}
)

// authRefusal is a refused CONNECT: why, and the detail for the log.
type authRefusal struct {
	refusalReason
	detail string
}

func refuse(r refusalReason, format string, args ...any) *authRefusal {
	return &authRefusal{refusalReason: r, detail: fmt.Sprintf(format, args...)}
}

// credentials are what a CONNECT brings to authenticate with.
type credentials struct {
	// chain is the client certificate (first) and what else the client
	// presented in the TLS handshake; nil without one.
	chain []*x509.Certificate
	// secret is the MQTT password, else the WebSocket request's token.
	secret   string
	username string
	password []byte
	// secure is set on the TLS listeners; serverName is the name the
	// client asked for (SNI).
	secure     bool
	serverName string
	// ws is the WebSocket connection (its request), nil on MQTT.
	ws *wsConn
}

func credentialsOf(cl *mqtt.Client, pk packets.Packet, w *topicWatch) credentials {
	cr := credentials{username: string(pk.Connect.Username), secret: string(pk.Connect.Password), password: pk.Connect.Password,
		secure: cl.Net.Listener == listenerTLS || cl.Net.Listener == listenerWSS}
	if w == nil {
		return cr
	}
	if st := tlsState(w); st != nil {
		cr.chain, cr.serverName = st.PeerCertificates, st.ServerName
	}
	if wc, ok := w.Conn.(*wsConn); ok {
		cr.ws = wc
		if cr.secret == "" {
			cr.secret = wc.token
		}
	}
	return cr
}

// auth authenticates connections and keeps what they may do current: it
// holds the parsed policies, the custom authorizer and the registry
// watch that ends revoked sessions.
type auth struct {
	s        *Server
	reg      Registry
	policies policyCache
	authz    *authorizer // nil without Options.Authorizer.URL
	logs     *rateLog    // refusals' log lines, per reason
	// denyAll answers for a connection without an identity outside Dev.
	denyAll *policy.Decider
	changes changeQueue
	// gen counts the registry changes that end sessions or change
	// policies, bumped before they are queued.
	gen     atomic.Uint64
	cancel  func() // of the registry watch
	stopped chan struct{}
	wg      sync.WaitGroup
}

func newAuth(s *Server) *auth {
	a := &auth{s: s, reg: s.opts.Registry, logs: newRateLog(10 * time.Second), denyAll: policy.Compile(nil, policy.Context{}),
		stopped: make(chan struct{})}
	a.policies.m = map[string]cachedPolicy{}
	a.changes.wake = make(chan struct{}, 1)
	if s.opts.Authorizer.URL != "" {
		a.authz = newAuthorizer(s.opts.Authorizer, s.metrics)
	}
	return a
}

// describe says how the listener id authenticates, for its start line.
func (a *auth) describe(id string) string {
	switch {
	case a.s.opts.Dev:
		return "anonymous (--dev: everything allowed)"
	case id == listenerTLS || id == listenerWSS:
		return "client certificates or tokens"
	case a.s.opts.TokenAuth:
		return "tokens (in clear)"
	}
	return "none (plain listener without token authentication: every connection refused)"
}

// authenticate decides who cl is: Dev allows anyone (the user name, or
// anonymous, as principal); otherwise a client certificate, else a
// token (a registry token, or one the custom authorizer decides). The
// connection's policies must allow iot:Connect (and iot:Publish on its
// Will).
func (a *auth) authenticate(cl *mqtt.Client, pk packets.Packet, w *topicWatch) (*identity, *authRefusal) {
	if a.s.opts.Dev {
		return &identity{method: methodAnonymous, principal: principal(cl)}, nil
	}
	if a.reg == nil && a.authz == nil {
		return nil, refuse(refusedNotConfigured, "no identity is configured (no registry, no custom authorizer): anonymous access needs --dev")
	}
	if a.reg != nil {
		select {
		case <-a.reg.Ready():
		default:
			return nil, refuse(refusedNotReady, "the registry's view is not ready yet")
		}
	}
	gen := a.gen.Load()
	cr := credentialsOf(cl, pk, w)
	var id *identity
	var ref *authRefusal
	switch {
	case len(cr.chain) > 0 && a.reg != nil:
		id, ref = a.byCertificate(cl, cr.chain)
	case len(cr.chain) > 0:
		return nil, refuse(refusedUnknownCert, "a client certificate, but no registry to look it up in")
	case cr.secret == "":
		return nil, refuse(refusedNoCredentials, "no client certificate and no token (MQTT password)")
	case !cr.secure && !a.s.opts.TokenAuth:
		return nil, refuse(refusedPlainListener, "a token on the plain %s listener: connect over TLS, or enable token authentication on plain listeners (--mqtt-token-auth)", cl.Net.Listener)
	case a.reg != nil && isRegistryToken(cr.secret):
		id, ref = a.byToken(cl, cr.secret)
	case a.authz != nil:
		id, ref = a.byAuthorizer(cl, cr)
	default:
		return nil, refuse(refusedBadToken, "the password is not an iotpipe token (%s...) and no custom authorizer is configured", registry.TokenPrefix)
	}
	if ref != nil {
		return nil, ref
	}
	id.gen = gen
	d := id.decider.Load()
	if !d.AllowConnect(cl.ID) {
		hint := ""
		if len(id.policies) == 0 && id.method != methodAuthorizer {
			hint = " (no policy is attached to the principal)"
		}
		return nil, refuse(refusedConnectDenied, "no policy of %s allows iot:Connect on client/%s%s", id.principal, cl.ID, hint)
	}
	if pk.Connect.WillFlag && !d.AllowPublish(pk.Connect.WillTopic, pk.Connect.WillRetain) {
		return nil, refuse(refusedWillDenied, "no policy of %s allows iot:Publish on the Will topic %s", id.principal, pk.Connect.WillTopic)
	}
	return id, nil
}

// byCertificate authenticates a client certificate: valid now, and
// registered and ACTIVE, or registered now under a registered CA
// (JITR) and ACTIVE.
func (a *auth) byCertificate(cl *mqtt.Client, chain []*x509.Certificate) (*identity, *authRefusal) {
	leaf := chain[0]
	certID := pki.ID(leaf.Raw)
	now := time.Now()
	if err := pki.CheckClient(leaf, now); err != nil {
		if now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
			return nil, refuse(refusedExpired, "certificate %s: %v", certID, err)
		}
		return nil, refuse(refusedInvalidCert, "certificate %s: %v", certID, err)
	}
	c, err := a.reg.Certificate(certID)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		var ref *authRefusal
		if c, ref = a.registerJIT(cl, chain); ref != nil {
			return nil, ref
		}
	case err != nil:
		return nil, refuse(refusedRegistryError, "certificate %s: %v", certID, err)
	}
	switch c.Status {
	case registry.StatusActive:
	case registry.StatusRevoked:
		return nil, refuse(refusedRevoked, "certificate %s is REVOKED", certID)
	case registry.StatusPendingActivation:
		return nil, refuse(refusedPending, "certificate %s is PENDING_ACTIVATION (activate it: iotpipe certs activate %s)", certID, certID)
	default:
		return nil, refuse(refusedInactive, "certificate %s is %s", certID, c.Status)
	}
	id := &identity{method: methodCertificate, principal: certID, certID: certID}
	id.ctx = policy.Context{ClientID: cl.ID, SourceIP: remoteAddr(cl)}
	if vars, err := policy.CertificateFromX509(leaf); err == nil {
		id.ctx.Certificate = vars
	} else {
		a.s.opts.Logger.Debug("certificate policy variables", "certificate", certID, "err", err)
	}
	if ref := a.attach(id, cl.ID); ref != nil {
		return nil, ref
	}
	return id, nil
}

// byToken authenticates a registry token.
func (a *auth) byToken(cl *mqtt.Client, secret string) (*identity, *authRefusal) {
	t, err := a.reg.TokenBySecret(secret)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return nil, refuse(refusedBadToken, "the token is not known (revoked, or mistyped)")
	case err != nil:
		return nil, refuse(refusedRegistryError, "token: %v", err)
	}
	id := &identity{method: methodToken, principal: t.Principal, tokenID: t.ID}
	id.ctx = policy.Context{ClientID: cl.ID, SourceIP: remoteAddr(cl)}
	if ref := a.attach(id, cl.ID); ref != nil {
		return nil, ref
	}
	return id, nil
}

// attach finds the thing of a registry principal's connection and
// compiles its policies for it.
func (a *auth) attach(id *identity, clientID string) *authRefusal {
	thing, err := a.attachedThing(id.principal, clientID)
	if err != nil {
		return refuse(refusedRegistryError, "things of %s: %v", id.principal, err)
	}
	if thing != nil {
		id.thing = thing.Name
		id.ctx.Thing = &policy.Thing{Name: thing.Name, TypeName: thing.TypeName, Attributes: thing.Attributes}
	}
	return a.compileRegistry(id)
}

// attachedThing returns the thing a connection of principal with
// clientID is attached to: the thing named clientID when it is attached
// to the principal (AWS's rule for a certificate attached to several
// things), else the principal's only thing; nil when neither.
func (a *auth) attachedThing(principal, clientID string) (*registry.Thing, error) {
	names, err := a.reg.PrincipalThings(principal)
	if err != nil {
		return nil, err
	}
	name := ""
	switch {
	case slices.Contains(names, clientID):
		name = clientID
	case len(names) == 1:
		name = names[0]
	default:
		return nil, nil
	}
	t, err := a.reg.Thing(name)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, nil // detached meanwhile
	}
	return t, err
}

// compileRegistry compiles the registry policies of id's principal for
// its connection.
func (a *auth) compileRegistry(id *identity) *authRefusal {
	stored, err := a.reg.PrincipalPolicies(id.principal)
	if err != nil {
		return refuse(refusedRegistryError, "policies of %s: %v", id.principal, err)
	}
	parsed := make([]*policy.Policy, 0, len(stored))
	names := make([]string, 0, len(stored))
	for _, p := range stored {
		pp, err := a.policies.parse(p)
		if err != nil {
			// A stored document that no longer parses could hold a Deny:
			// refuse rather than allow more than the policies say.
			return refuse(refusedBadPolicy, "policy %s attached to %s: %v", p.Name, id.principal, err)
		}
		parsed = append(parsed, pp)
		names = append(names, p.Name)
	}
	id.policies = names
	id.decider.Store(policy.Compile(parsed, id.ctx))
	return nil
}

// remoteAddr is cl's address for aws:SourceIp (invalid when unknown).
func remoteAddr(cl *mqtt.Client) netip.Addr {
	ap, err := netip.ParseAddrPort(cl.Net.Remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// decider returns what decides cl's actions: nil allows everything
// (Dev); a connection without an identity outside Dev may do nothing.
func (a *auth) decider(cl *mqtt.Client) *policy.Decider {
	if id := identityOf(cl); id != nil {
		return id.decider.Load()
	}
	if a.s.opts.Dev {
		return nil
	}
	return a.denyAll
}

// who returns the principal and thing cl's events carry.
func (a *auth) who(cl *mqtt.Client) (principalID, thing string) {
	if id := identityOf(cl); id != nil {
		return id.principal, id.thing
	}
	return principal(cl), ""
}

// refused counts and logs a refused CONNECT (once per 10s per reason,
// with the count held back) and answers it with a CONNACK; the error it
// returns makes mochi close the connection.
func (a *auth) refused(cl *mqtt.Client, r *authRefusal) error {
	a.s.metrics.authRefused.WithLabelValues(r.label).Inc()
	if ok, held := a.logs.allow(r.label, time.Now()); ok {
		args := []any{"reason", r.label, "client", cl.ID, "remote", cl.Net.Remote, "listener", cl.Net.Listener, "detail", r.detail}
		if held > 0 {
			args = append(args, "suppressed", held)
		}
		a.s.opts.Logger.Warn("mqtt connection refused", args...)
	}
	code := r.v3
	if cl.Properties.ProtocolVersion == 5 {
		code = r.v5
	}
	a.s.connack(cl, code, r.label)
	return packets.Code{Code: r.v5, Reason: r.label}
}

// policyCache keeps parsed policy documents by name and version: a
// connect storm under one policy parses it once.
type policyCache struct {
	mu sync.Mutex
	m  map[string]cachedPolicy
}

type cachedPolicy struct {
	version int64
	p       *policy.Policy
}

// maxCachedPolicies bounds the cache; past it, it starts again empty.
const maxCachedPolicies = 4096

func (c *policyCache) parse(p *registry.Policy) (*policy.Policy, error) {
	c.mu.Lock()
	cp, ok := c.m[p.Name]
	c.mu.Unlock()
	if ok && cp.version == p.Version() {
		return cp.p, nil
	}
	parsed, err := policy.Parse(p.Name, p.Document)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if len(c.m) >= maxCachedPolicies {
		clear(c.m)
	}
	c.m[p.Name] = cachedPolicy{p.Version(), parsed}
	c.mu.Unlock()
	return parsed, nil
}

// isRegistryToken reports whether secret has the registry tokens'
// prefix (other secrets go to the custom authorizer).
func isRegistryToken(secret string) bool {
	return len(secret) > len(registry.TokenPrefix) && secret[:len(registry.TokenPrefix)] == registry.TokenPrefix
}
