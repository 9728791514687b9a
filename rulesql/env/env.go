// Package env holds what a compiled rule evaluates against: the event
// (Input), the stores a rule may read or write (State, ShadowReader) and
// the per-evaluation context (Ctx) that compiled closures receive.
package env

// Input is one event as a rule sees it.
type Input struct {
	// Payload is the decoded payload in the schemas/payload representation
	// (map[string]any, []any, string, bool, nil, int64, float64). Set it to
	// value.Undefined when the payload is not JSON; Raw then holds it.
	Payload any
	// Raw is the payload as received; encode(*, 'base64') and SELECT * on
	// a non-JSON payload use it.
	Raw []byte
	// Topic is the MQTT topic the event was published to.
	Topic string
	// ClientID, Principal and Thing identify the sender.
	ClientID  string
	Principal string
	Thing     string
	// Timestamp is the receive time in milliseconds since the epoch;
	// timestamp() returns it.
	Timestamp int64
	// Partition and Offset locate the event in the log; traceid() and
	// newuuid() are derived from them when set, so replays repeat them.
	Partition int32
	Offset    int64
	// Shadow answers get_thing_shadow(); nil reads as "no shadow".
	Shadow ShadowReader

	// levels keeps topic levels 1 to 4 of levelsOf as values (see
	// Level): the rules of one event read topic(2) again and again.
	levels   [4]any
	levelsOf string
}

// Level returns topic level n (1-based) as KeepLevel kept it for the
// current Topic, false when it was not kept. An Input is evaluated by one
// goroutine at a time.
func (in *Input) Level(n int64) (any, bool) {
	if n < 1 || n > int64(len(in.levels)) || in.levels[n-1] == nil || in.levelsOf != in.Topic {
		return nil, false
	}
	return in.levels[n-1], true
}

// KeepLevel keeps v as topic level n of the current Topic (levels past
// the fourth are not kept).
func (in *Input) KeepLevel(n int64, v any) {
	if n < 1 || n > int64(len(in.levels)) {
		return
	}
	if in.levelsOf != in.Topic {
		clear(in.levels[:])
		in.levelsOf = in.Topic
	}
	in.levels[n-1] = v
}

// State is the key-value store stateful functions such as pewma() keep
// their state in. Keys are built by the rule from (rule, call site, thing).
// Set copies the key and value it keeps: callers reuse their bytes.
type State interface {
	Get(key []byte) ([]byte, bool, error)
	Set(key, value []byte) error
}

// Memo is implemented by a State that keeps decoded values beside the
// state, so that a stateful function need not read and decode its state
// on every call. A kept value must equal what decoding the key's stored
// value gives: a function keeps a value only when it has just read or
// written the key's state, and the store forgets what it kept whenever
// the state may change otherwise (a write it did not see, a rollback).
type Memo interface {
	// Recall returns the value kept for key.
	Recall(key []byte) (any, bool)
	// Keep keeps v for key.
	Keep(key []byte, v any)
}

// ShadowReader reads iotpipe's shadow view for get_thing_shadow().
type ShadowReader interface {
	// ThingShadow returns the shadow document of a thing (shadowName ""
	// is the classic shadow), and false when there is none.
	ThingShadow(thing, shadowName string) (doc any, ok bool, err error)
}

// Ctx is the context of one evaluation of one rule. Compiled closures
// read the event through it.
type Ctx struct {
	In *Input
	// Doc is the current document: the payload at the top level, one
	// element inside a nested SELECT.
	Doc any
	// St is the state store (may be nil when the rule has no stateful
	// function).
	St State
	// Rule is the rule's name (it prefixes state keys).
	Rule string
	// Slots hold the values of the SELECT items when WHERE refers to an
	// alias or the rule has stateful calls.
	Slots []any
	// Aggs hold the finished aggregate values while an aggregate row is
	// built.
	Aggs []any
	// Err records the first error a stateful function met.
	Err error
	// Buf is scratch space for stateful functions (their state keys);
	// its contents are not kept from one use to the next.
	Buf []byte
	// Stash holds, by stateful call site, a value the call keeps for the
	// rest of one evaluation (its result until the output is built), so
	// that it is not allocated on every evaluation: kept by Reset with
	// the context, read only by the compiled rule the context serves.
	Stash []any
	// Args is the stack of the arguments of the function calls being
	// evaluated (see PushArgs), kept by Reset with the context.
	Args []any
}

// PushArgs returns n empty slots on c's argument stack for a function
// call's arguments. They are valid until the matching PopArgs: nested
// calls push and pop above them (growing the stack leaves them where
// they are).
func (c *Ctx) PushArgs(n int) []any {
	base := len(c.Args)
	c.Args = append(c.Args, make([]any, n)...)
	return c.Args[base : base+n : base+n]
}

// PopArgs releases the slots of the last PushArgs, args, emptying them.
func (c *Ctx) PopArgs(args []any) {
	clear(args)
	n := len(c.Args) - len(args)
	clear(c.Args[n:])
	c.Args = c.Args[:n]
}

// Reset makes c the context of a new evaluation of rule over in (nil:
// none), with no Slots, keeping the space of Buf, Slots, Stash and Args
// (see UseSlots). It writes only the fields it changes: it runs before
// every evaluation.
func (c *Ctx) Reset(in *Input, st State, rule string) {
	clear(c.Slots)
	c.In, c.St, c.Rule = in, st, rule
	c.Doc = nil
	if in != nil {
		c.Doc = in.Payload
	}
	c.Slots, c.Buf, c.Args = c.Slots[:0], c.Buf[:0], c.Args[:0]
	if c.Aggs != nil {
		c.Aggs = nil
	}
	if c.Err != nil {
		c.Err = nil
	}
}

// UseSlots gives c n empty Slots.
func (c *Ctx) UseSlots(n int) {
	if cap(c.Slots) < n {
		c.Slots = make([]any, n)
	}
	c.Slots = c.Slots[:n]
}
