package ingest

import (
	"errors"
	"strings"
	"sync"

	"github.com/iotpipe/iotpipe/ingest/policy"
	"github.com/iotpipe/iotpipe/ingest/registry"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// sessionEnded is why the server ended a live session: AWS's
// disconnectReason for the lifecycle event (AUTH_ERROR,
// CUSTOMAUTH_TTL_EXPIRATION) and what happened, in words.
type sessionEnded struct {
	reason, detail string
}

func (e *sessionEnded) Error() string { return "session ended: " + e.detail }

// changeQueue hands registry changes from the registry view's goroutine
// (which must never block) to the auth's goroutine.
type changeQueue struct {
	mu   sync.Mutex
	list []registry.Change
	wake chan struct{} // cap 1
}

func (q *changeQueue) push(c registry.Change) {
	q.mu.Lock()
	q.list = append(q.list, c)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *changeQueue) take() []registry.Change {
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.list
	q.list = nil
	return l
}

// start follows the registry's changes: those that end sessions
// (registry.Change.Ends: a certificate no longer ACTIVE, a token
// revoked, a thing deleted) end the live sessions they name, with a
// disconnected event saying why; those that change what sessions may do
// (a policy updated or deleted, a policy attached or detached, a
// thing's type or attributes) compile the sessions' policies again.
func (a *auth) start() {
	if a.reg == nil {
		return
	}
	a.cancel = a.reg.Watch(a.onChange)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			select {
			case <-a.stopped:
				return
			case <-a.changes.wake:
				a.apply(a.changes.take())
			}
		}
	}()
}

// stop stops following the registry.
func (a *auth) stop() {
	if a.cancel != nil {
		a.cancel()
	}
	close(a.stopped)
	a.wg.Wait()
}

// onChange runs on the registry view's goroutine: it only queues.
func (a *auth) onChange(c registry.Change) {
	if _, ok := c.Ends(); ok || changesPolicies(c) {
		a.gen.Add(1)
		a.changes.push(c)
	}
}

// changesPolicies reports whether c changes what live sessions may do.
func changesPolicies(c registry.Change) bool {
	e := c.New
	if e == nil {
		e = c.Old
	}
	switch e := e.(type) {
	case *registry.Policy:
		return true
	case *registry.Attachment:
		return e.Policy != ""
	case *registry.Thing:
		return c.Old != nil && c.New != nil
	}
	return false
}

// affected is what a batch of changes touches.
type affected struct {
	ends                         []registry.End
	principals, things, policies map[string]bool
}

func (f *affected) add(c registry.Change) {
	if e, ok := c.Ends(); ok {
		f.ends = append(f.ends, e)
		return
	}
	e := c.New
	if e == nil {
		e = c.Old
	}
	switch e := e.(type) {
	case *registry.Policy:
		f.policies[e.Name] = true
	case *registry.Attachment:
		f.principals[e.Principal] = true
	case *registry.Thing:
		f.things[e.Name] = true
	}
}

// end returns the end of id's session among f.ends, if any.
func (f *affected) end(id *identity) (registry.End, bool) {
	for _, e := range f.ends {
		switch {
		case e.TokenID != "" && id.method == methodToken && id.tokenID == e.TokenID,
			e.TokenID == "" && e.Principal != "" && id.method == methodCertificate && id.certID == e.Principal,
			e.Thing != "" && id.thing == e.Thing:
			return e, true
		}
	}
	return registry.End{}, false
}

// refresh reports whether id's policies must be compiled again.
func (f *affected) refresh(id *identity) bool {
	if id.method != methodCertificate && id.method != methodToken {
		return false // the custom authorizer's policies are its own
	}
	if f.principals[id.principal] || (id.thing != "" && f.things[id.thing]) {
		return true
	}
	for _, p := range id.policies {
		if f.policies[p] {
			return true
		}
	}
	return false
}

// apply ends and refreshes the live sessions a batch of changes
// touches, in one pass over the connections.
func (a *auth) apply(changes []registry.Change) {
	f := affected{principals: map[string]bool{}, things: map[string]bool{}, policies: map[string]bool{}}
	for _, c := range changes {
		f.add(c)
	}
	a.s.conns.Range(func(_, v any) bool {
		cl := v.(*conn).cl
		id := identityOf(cl)
		if id == nil {
			return true
		}
		if e, ok := f.end(id); ok {
			a.endSession(cl, "AUTH_ERROR", e.Reason)
		} else if f.refresh(id) {
			a.recompile(cl, id)
		}
		return true
	})
}

// recompile compiles id's registry policies again, with its thing's
// current type and attributes; if that fails the session may do nothing
// more (fail closed) until the next change.
func (a *auth) recompile(cl *mqtt.Client, id *identity) {
	if id.thing != "" {
		if t, err := a.reg.Thing(id.thing); err == nil {
			ctx := id.ctx
			ctx.Thing = &policy.Thing{Name: t.Name, TypeName: t.TypeName, Attributes: t.Attributes}
			id.ctx = ctx
		}
	}
	if ref := a.compileRegistry(id); ref != nil {
		id.decider.Store(a.denyAll)
		a.s.opts.Logger.Warn("policies of a live session could not be compiled again: it may do nothing until they can",
			"client", cl.ID, "principal", id.principal, "detail", ref.detail)
		return
	}
	a.s.opts.Logger.Debug("policies of a live session compiled again", "client", cl.ID, "principal", id.principal, "policies", id.policies)
}

// established checks a session just established against the changes
// the registry applied since its CONNECT was authenticated (the
// revocation may have looked for sessions before this one was there),
// and starts the custom authorizer's hold on it.
func (a *auth) established(cl *mqtt.Client) {
	id := identityOf(cl)
	if id == nil {
		return
	}
	if id.session != nil {
		id.session.start(a, cl, id)
	}
	if a.reg == nil || a.gen.Load() == id.gen || (id.method != methodCertificate && id.method != methodToken) {
		return
	}
	if why := a.invalid(id); why != "" {
		a.endSession(cl, "AUTH_ERROR", why)
		return
	}
	a.recompile(cl, id)
}

// invalid says why id's credentials no longer hold, "" when they do.
func (a *auth) invalid(id *identity) string {
	switch id.method {
	case methodCertificate:
		c, err := a.reg.Certificate(id.certID)
		switch {
		case errors.Is(err, registry.ErrNotFound):
			return "certificate deleted"
		case err == nil && c.Status != registry.StatusActive:
			return "certificate " + string(c.Status)
		}
	case methodToken:
		if _, err := a.reg.Token(id.tokenID); errors.Is(err, registry.ErrNotFound) {
			return "token revoked"
		}
	}
	if id.thing != "" {
		if _, err := a.reg.Thing(id.thing); errors.Is(err, registry.ErrNotFound) {
			return "thing deleted"
		}
	}
	return ""
}

// endSession ends cl's session for reason (AWS's disconnectReason) and
// detail: an MQTT 5 client gets a DISCONNECT (0x87 Not authorized, or
// 0xA0 Maximum connect time when the custom authorizer's time is up)
// with the detail as its reason string; the disconnected lifecycle event
// carries both.
func (a *auth) endSession(cl *mqtt.Client, reason, detail string) {
	code := packets.ErrNotAuthorized.Code
	if reason == "CUSTOMAUTH_TTL_EXPIRATION" {
		code = packets.ErrMaxConnectTime.Code
	}
	if cl.Properties.ProtocolVersion == 5 {
		out := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ReasonCode: code}
		out.Properties.ReasonString = detail
		_ = cl.WritePacket(out)
	}
	cl.Stop(&sessionEnded{reason: reason, detail: detail})
	label := strings.ReplaceAll(strings.ToLower(detail), " ", "_")
	if reason == "CUSTOMAUTH_TTL_EXPIRATION" {
		label = "authorizer_ttl"
	}
	a.s.metrics.sessionsEnded.WithLabelValues(label).Inc()
	a.s.opts.Logger.Info("mqtt session ended", "client", cl.ID, "reason", reason, "detail", detail)
}
