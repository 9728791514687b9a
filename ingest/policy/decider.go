package policy

import (
	"fmt"
	"strings"
	"sync"
)

// The actions iotpipe authorizes, with the resource each is checked
// against.
const (
	// ActionConnect is checked against client/<client id>.
	ActionConnect = "iot:Connect"
	// ActionPublish is checked against topic/<topic>.
	ActionPublish = "iot:Publish"
	// ActionRetainPublish is checked against topic/<topic>, besides
	// ActionPublish, for a publish with the RETAIN flag.
	ActionRetainPublish = "iot:RetainPublish"
	// ActionReceive is checked against topic/<topic> for every message
	// delivered to the client.
	ActionReceive = "iot:Receive"
	// ActionSubscribe is checked against topicfilter/<topic filter>.
	ActionSubscribe = "iot:Subscribe"
	// ActionGetThingShadow is checked against thing/<thing> (classic
	// shadow) or thing/<thing>/<shadow name>.
	ActionGetThingShadow = "iot:GetThingShadow"
	// ActionUpdateThingShadow is checked like ActionGetThingShadow.
	ActionUpdateThingShadow = "iot:UpdateThingShadow"
	// ActionDeleteThingShadow is checked like ActionGetThingShadow.
	ActionDeleteThingShadow = "iot:DeleteThingShadow"
)

// slot numbers the actions a Decider keeps a cache for.
type slot uint8

const (
	slotConnect slot = iota
	slotPublish
	slotRetainPublish
	slotReceive
	slotSubscribe
	slotGetShadow
	slotUpdateShadow
	slotDeleteShadow
	numSlots
)

var slotInfo = [numSlots]struct{ action, lower, prefix string }{
	{ActionConnect, "iot:connect", "client/"},
	{ActionPublish, "iot:publish", "topic/"},
	{ActionRetainPublish, "iot:retainpublish", "topic/"},
	{ActionReceive, "iot:receive", "topic/"},
	{ActionSubscribe, "iot:subscribe", "topicfilter/"},
	{ActionGetThingShadow, "iot:getthingshadow", "thing/"},
	{ActionUpdateThingShadow, "iot:updatethingshadow", "thing/"},
	{ActionDeleteThingShadow, "iot:deletethingshadow", "thing/"},
}

func slotOf(action string) (slot, bool) {
	for k := range numSlots {
		if slotInfo[k].action == action {
			return k, true
		}
	}
	return 0, false
}

// actionSlots returns the slot bits of the known actions a statement's
// Action (or NotAction) covers.
func actionSlots(actions []*glob, not bool) uint16 {
	var bits uint16
	for k := range numSlots {
		if coversAction(actions, not, slotInfo[k].lower) {
			bits |= 1 << k
		}
	}
	return bits
}

func coversAction(actions []*glob, not bool, lower string) bool {
	for _, g := range actions {
		if g.match(lower) {
			return !not
		}
	}
	return not
}

// DefaultCacheSize is how many resources a Decider remembers per action
// unless CacheSize says otherwise.
const DefaultCacheSize = 64

// maxCachedName bounds what a cache entry holds: a resource name longer
// than AWS's 256-byte topic limit is decided without the cache, so a client
// cannot pin large strings in its Decider.
const maxCachedName = 256

// Option changes how Compile builds a Decider.
type Option func(*options)

type options struct {
	cacheSize int
}

// CacheSize sets how many decisions a Decider remembers per action
// (default DefaultCacheSize). When full, a remembered decision picked at
// random makes room. Zero or less disables the cache: every decision is a
// match over the compiled patterns. Resource names over 256 bytes are never
// cached.
func CacheSize(n int) Option {
	return func(o *options) { o.cacheSize = max(n, 0) }
}

// Decider answers one connection's authorization questions. It is the
// policies attached to the connection's principal with the connection's
// variables substituted and its conditions decided, so it is a snapshot:
// compile a new one when the policies, the thing or the certificate change.
// Safe for concurrent use.
type Decider struct {
	slots     [numSlots]slotState
	all       []*compiled // every statement that can match, for other actions
	skipped   []string
	cacheSize int
}

type slotState struct {
	deny, allow []*compiled
	mu          sync.RWMutex
	cache       map[string]bool // resource name (after the prefix) -> allowed
}

// compiled is a statement ready for one connection.
type compiled struct {
	policy    string
	src       *statement
	resources []*glob
}

// Compile prepares the policies attached to one principal for one
// connection: it substitutes the connection's policy variables once,
// decides the Condition blocks (all of their keys are the connection's)
// and precompiles the resource patterns. A statement whose variables
// cannot be resolved, or whose conditions do not hold, matches nothing.
func Compile(policies []*Policy, c Context, opts ...Option) *Decider {
	o := options{cacheSize: DefaultCacheSize}
	for _, opt := range opts {
		opt(&o)
	}
	d := &Decider{cacheSize: o.cacheSize}
	r := &resolver{c: &c}
	for _, p := range policies {
		if p == nil {
			continue
		}
		for _, s := range p.statements {
			cs, why := compileStatement(p, s, r)
			if cs == nil {
				d.skipped = append(d.skipped, fmt.Sprintf("policy %q statement %d: %s", p.name, s.index, why))
				continue
			}
			d.all = append(d.all, cs)
			for k := range numSlots {
				if s.slots&(1<<k) == 0 {
					continue
				}
				if s.deny {
					d.slots[k].deny = append(d.slots[k].deny, cs)
				} else {
					d.slots[k].allow = append(d.slots[k].allow, cs)
				}
			}
		}
	}
	return d
}

// compileStatement returns nil and the reason when s matches nothing for
// this connection.
func compileStatement(p *Policy, s *statement, r *resolver) (*compiled, string) {
	for _, c := range s.conditions {
		holds, missing, ok := c.eval(r)
		if !ok {
			return nil, fmt.Sprintf("${%s} has no value", missing)
		}
		if !holds {
			return nil, fmt.Sprintf("condition %s on %s does not hold", c.written, c.key.name)
		}
	}
	cs := &compiled{policy: p.name, src: s, resources: make([]*glob, 0, len(s.resources))}
	for _, res := range s.resources {
		switch {
		case res.never:
		case res.static != nil:
			cs.resources = append(cs.resources, res.static)
		default:
			toks, missing, ok := res.tmpl.resolve(r)
			if !ok {
				return nil, fmt.Sprintf("${%s} has no value", missing)
			}
			cs.resources = append(cs.resources, compileGlob(toks))
		}
	}
	return cs, ""
}

// matches reports whether the statement covers resource.
func (cs *compiled) matches(resource string) bool {
	for _, g := range cs.resources {
		if g.match(resource) {
			return !cs.src.notResource
		}
	}
	return cs.src.notResource
}

// Skipped explains the statements that match nothing for this connection:
// a variable without a value, or a condition that does not hold.
func (d *Decider) Skipped() []string { return d.skipped }

// Allow reports whether the policies allow action on resource (a short
// form such as topic/a/b, client/id, topicfilter/a/#, thing/name): an
// explicit Deny wins, and no Allow is a deny. For the actions named by the
// Action constants it is a map lookup once a resource has been decided
// (no allocation), otherwise a match over the compiled patterns.
func (d *Decider) Allow(action, resource string) bool {
	if k, ok := slotOf(action); ok {
		if name, ok := strings.CutPrefix(resource, slotInfo[k].prefix); ok {
			return d.decide(k, name)
		}
	}
	return d.Explain(action, resource).Allowed
}

// AllowConnect reports whether the client may connect with clientID
// (iot:Connect on client/<clientID>).
func (d *Decider) AllowConnect(clientID string) bool { return d.decide(slotConnect, clientID) }

// AllowPublish reports whether the client may publish to topic: iot:Publish
// on topic/<topic>, and iot:RetainPublish too when retain is set.
func (d *Decider) AllowPublish(topic string, retain bool) bool {
	return d.decide(slotPublish, topic) && (!retain || d.decide(slotRetainPublish, topic))
}

// AllowReceive reports whether a message on topic may be delivered to the
// client (iot:Receive on topic/<topic>).
func (d *Decider) AllowReceive(topic string) bool { return d.decide(slotReceive, topic) }

// AllowSubscribe reports whether the client may subscribe to filter
// (iot:Subscribe on topicfilter/<filter>; + and # are plain characters).
func (d *Decider) AllowSubscribe(filter string) bool { return d.decide(slotSubscribe, filter) }

// decide answers a known action on prefix+name, through the slot's cache.
func (d *Decider) decide(k slot, name string) bool {
	st := &d.slots[k]
	if len(st.allow) == 0 {
		return false
	}
	cached := d.cacheSize > 0 && len(name) <= maxCachedName
	if cached {
		st.mu.RLock()
		allowed, hit := st.cache[name]
		st.mu.RUnlock()
		if hit {
			return allowed
		}
	}
	allowed := evaluate(st.deny, st.allow, slotInfo[k].prefix+name).Allowed
	if cached {
		st.mu.Lock()
		if st.cache == nil {
			st.cache = make(map[string]bool, min(d.cacheSize, 16))
		}
		if len(st.cache) >= d.cacheSize {
			for old := range st.cache {
				delete(st.cache, old)
				break
			}
		}
		st.cache[strings.Clone(name)] = allowed
		st.mu.Unlock()
	}
	return allowed
}

// Explain decides action on resource without the cache and says which
// statement decided. Allow gives the same answer.
func (d *Decider) Explain(action, resource string) Decision {
	if k, ok := slotOf(action); ok {
		return evaluate(d.slots[k].deny, d.slots[k].allow, resource)
	}
	lower := strings.ToLower(action)
	var deny, allow []*compiled
	for _, cs := range d.all {
		if !coversAction(cs.src.actions, cs.src.notAction, lower) {
			continue
		}
		if cs.src.deny {
			deny = append(deny, cs)
		} else {
			allow = append(allow, cs)
		}
	}
	return evaluate(deny, allow, resource)
}

// evaluate applies AWS's order: a matching Deny decides, then a matching
// Allow; nothing matching is a deny.
func evaluate(deny, allow []*compiled, resource string) Decision {
	for _, cs := range deny {
		if cs.matches(resource) {
			return cs.decision(false)
		}
	}
	for _, cs := range allow {
		if cs.matches(resource) {
			return cs.decision(true)
		}
	}
	return Decision{}
}

func (cs *compiled) decision(allowed bool) Decision {
	return Decision{Allowed: allowed, Policy: cs.policy, Statement: cs.src.index, Sid: cs.src.sid}
}

// Decision is an answer with the statement that gave it.
type Decision struct {
	// Allowed is the answer.
	Allowed bool
	// Policy and Statement (1-based) name the deciding statement: the
	// Deny or Allow that matched. Statement is 0 when none matched (the
	// implicit deny).
	Policy    string
	Statement int
	// Sid is the deciding statement's Sid, if it has one.
	Sid string
}

// String reads like "deny: policy \"p\" statement 2 (Sid \"x\")" or
// "deny: no statement allows".
func (d Decision) String() string {
	verdict := "deny"
	if d.Allowed {
		verdict = "allow"
	}
	if d.Statement == 0 {
		return verdict + ": no statement allows"
	}
	s := fmt.Sprintf("%s: policy %q statement %d", verdict, d.Policy, d.Statement)
	if d.Sid != "" {
		s += fmt.Sprintf(" (Sid %q)", d.Sid)
	}
	return s
}
