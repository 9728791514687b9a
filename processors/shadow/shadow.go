// Package shadow is the device shadow processor: AWS IoT Device Shadow
// semantics as a materialized view of the event log.
//
// For every publish event on a shadow request topic
// ($aws/things/{thing}/shadow/{update|get|delete}, or
// $aws/things/{thing}/shadow/name/{shadowName}/{update|get|delete}) it
// applies the request, in log order, to the shadow held in the partition's
// state, and emits:
//
//   - the responses, as schemas.Outbound records on the outbound topic
//     (…/accepted, …/rejected, update/delta, update/documents; QoS 1; key
//     = thing; the accepted or rejected answer carries the event's
//     RequestID so the HTTP front can answer a waiting caller);
//   - every accepted change (update or delete) as a record on the
//     compacted shadows topic, key "thing" or "thing/name", value the
//     full document (see document.AppendStored).
//
// Timestamps (metadata, responses) are the request's receive time from
// its envelope, in Unix seconds, so a rebuild from the log reproduces the
// documents byte for byte. The AWS semantics themselves live in
// processors/shadow/document.
//
// The shadow of a thing lives in the partition its events are keyed to,
// so every request on a thing's shadow topics must be keyed by that
// thing (ingest and the HTTP front key shadow requests by the topic's
// thing, not by the publisher).
package shadow

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/shadow/document"
	"github.com/iotpipe/iotpipe/schemas"
)

// Name is the processor's name; it namespaces its state keys.
const Name = "shadow"

// Options configure the processor. The zero value is usable.
type Options struct {
	// Topics names the outbound and shadows topics. Fields left empty
	// take their value from schemas.DefaultTopics().
	Topics schemas.Topics
	// Limits bound update requests (size 8 KiB, depth 6 and clientToken
	// 64 bytes by default).
	Limits document.Limits
	// RateLimit, when positive, is the most requests per second one
	// thing may make on its shadows (classic and named together, as AWS
	// counts them; AWS's limit is 20); a request over it is rejected
	// with 429 and changes nothing. Seconds are those of the requests'
	// receive times, so a rebuild rejects the same requests.
	RateLimit int
	// NoMemo turns off the partition memo of decoded shadows (see
	// processors.Memo), so every request reads and decodes the stored
	// document; tests use it to check that the memo changes nothing.
	NoMemo bool
}

// Processor applies shadow requests. It implements processors.Processor.
// It keeps no memory of its own (decoded shadows are kept in each
// partition's processors.Memo), so one Processor may serve every
// partition, concurrently.
type Processor struct {
	opts     Options
	outbound string
	shadows  string
}

var _ processors.Processor = (*Processor)(nil)

// New returns a shadow processor.
func New(opts Options) *Processor {
	def := schemas.DefaultTopics()
	if opts.Topics.Outbound == "" {
		opts.Topics.Outbound = def.Outbound
	}
	if opts.Topics.Shadows == "" {
		opts.Topics.Shadows = def.Shadows
	}
	return &Processor{opts: opts, outbound: opts.Topics.Outbound, shadows: opts.Topics.Shadows}
}

// Name implements processors.Processor.
func (p *Processor) Name() string { return Name }

// Process implements processors.Processor: it applies one shadow request
// and ignores every other event.
func (p *Processor) Process(ctx context.Context, tx *processors.Tx, ev *processors.Event) error {
	// Most events are not shadow requests: they leave before the
	// request (which the handlers take by pointer) is made.
	if ev.Envelope.Type != schemas.EventPublish || !strings.HasPrefix(ev.Envelope.Topic, topicRoot) {
		return nil
	}
	req, ok := ParseTopic(ev.Envelope.Topic)
	if !ok {
		return nil
	}
	// Who may act on which shadow was decided at ingest, once, and the
	// request is in the log only if it was allowed (the principal is in
	// the envelope): the processor trusts the log, so a rebuild on any
	// node, whatever its flags, applies the same requests.
	now := eventTime(tx, ev)
	if p.opts.RateLimit > 0 {
		ok, err := p.admit(tx, req.Thing, now)
		if err != nil {
			p.rejectEarly(tx, ev, &req, document.ErrInternal, now)
			return err
		}
		if !ok {
			p.rejectEarly(tx, ev, &req, document.ErrTooManyRequests, now)
			return nil
		}
	}
	switch req.Op {
	case OpUpdate:
		return p.update(tx, ev, &req, now)
	case OpGet:
		return p.get(tx, ev, &req, now)
	default:
		return p.delete(tx, ev, &req, now)
	}
}

// admit counts a request of thing in the second now against
// RateLimit: false when the thing already made RateLimit requests in
// that second. The count lives in the state, under a key no shadow key
// can take (thing names hold no NUL), so it survives restarts and a
// rebuild counts alike.
func (p *Processor) admit(tx *processors.Tx, thing string, now int64) (bool, error) {
	key := append([]byte("\x00rate\x00"), thing...)
	var second, count int64
	if b, ok, err := tx.Get(key); err != nil {
		return false, fmt.Errorf("shadow %s: read rate: %w", thing, err)
	} else if ok && len(b) == 16 {
		second, count = int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:]))
	}
	if second != now {
		second, count = now, 0
	}
	if count >= int64(p.opts.RateLimit) {
		return false, nil
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], uint64(second))
	binary.BigEndian.PutUint64(b[8:], uint64(count+1))
	if err := tx.Set(key, b[:]); err != nil {
		return false, fmt.Errorf("shadow %s: write rate: %w", thing, err)
	}
	return true, nil
}

// eventTime is the time of a request in Unix seconds: when ingest
// received it (so that a rebuild from the log gives the same metadata
// timestamps, whatever the processing clock), or the task's clock for an
// event without a receive time.
func eventTime(tx *processors.Tx, ev *processors.Event) int64 {
	if ev.Envelope.ReceivedAt > 0 {
		return ev.Envelope.ReceivedAt / int64(time.Second)
	}
	return tx.Now().Unix()
}

// load returns the shadow of req: the one memoized with the state the
// processor last wrote or read for key in this partition, or the stored
// document, read and decoded; a missing one is a fresh Shadow.
func (p *Processor) load(tx *processors.Tx, key []byte, req *Request) (*document.Shadow, error) {
	if !p.opts.NoMemo {
		if v, ok := tx.Memo().Get(key); ok {
			return v.(*document.Shadow), nil
		}
	}
	b, ok, err := tx.Get(key)
	if err != nil {
		return nil, fmt.Errorf("shadow %s: read state: %w", key, err)
	}
	s := &document.Shadow{Thing: req.Thing, Name: req.Name}
	if ok {
		if *s, err = document.DecodeStored(b); err != nil {
			return nil, fmt.Errorf("shadow %s: %w", key, err)
		}
	}
	p.memoize(tx, key, s)
	return s, nil
}

// memoize keeps s as the shadow of key in the partition's memo. It is
// called with the shadow just read from the state or just written to
// it, so the memo always equals the state (processors.Memo).
func (p *Processor) memoize(tx *processors.Tx, key []byte, s *document.Shadow) {
	if !p.opts.NoMemo {
		tx.Memo().Put(key, s)
	}
}

func (p *Processor) update(tx *processors.Tx, ev *processors.Event, req *Request, now int64) error {
	if rej := document.CheckPayload(ev.Payload, p.opts.Limits); rej != nil {
		p.reject(tx, ev, req, rej, now, "", false)
		return nil
	}
	// The payload is decoded here rather than through ev.JSON(): the
	// specialised decoder gives the same value, faster (see
	// document.ParseUpdatePayload).
	u, rej := document.ParseUpdatePayload(ev.Payload, p.opts.Limits)
	if rej != nil {
		p.reject(tx, ev, req, rej, now, u.ClientToken, u.HasClientToken)
		return nil
	}
	key := Key(req.Thing, req.Name)
	cur, err := p.load(tx, key, req)
	if err != nil {
		p.reject(tx, ev, req, document.ErrInternal, now, u.ClientToken, u.HasClientToken)
		return err
	}
	next, res, rej := document.Apply(cur, &u, now, p.opts.Limits)
	if rej != nil {
		p.reject(tx, ev, req, rej, now, u.ClientToken, u.HasClientToken)
		return nil
	}
	if err := tx.Set(key, res.Stored); err != nil {
		p.reject(tx, ev, req, document.ErrInternal, now, u.ClientToken, u.HasClientToken)
		return fmt.Errorf("shadow %s: write state: %w", key, err)
	}
	p.memoize(tx, key, &next)
	// accepted (3 headers with the request id), delta, documents (3
	// each) and the changelog record (1).
	o := p.newOutbox(tx, req, 4, 10+hasID(ev), len(ev.Envelope.RequestID))
	o.send("update/accepted", res.Accepted, ev.Envelope.RequestID)
	if res.Delta != nil {
		o.send("update/delta", res.Delta, "")
	}
	o.send("update/documents", res.Documents, "")
	o.changelog(key, res.Stored)
	return nil
}

func (p *Processor) get(tx *processors.Tx, ev *processors.Event, req *Request, now int64) error {
	tok, rej := p.token(ev)
	if rej != nil {
		p.reject(tx, ev, req, rej, now, tok.ClientToken, tok.HasClientToken)
		return nil
	}
	cur, err := p.load(tx, Key(req.Thing, req.Name), req)
	if err != nil {
		p.reject(tx, ev, req, document.ErrInternal, now, tok.ClientToken, tok.HasClientToken)
		return err
	}
	out, rej := document.AppendGet(make([]byte, 0, 1024), cur, now, tok)
	if rej != nil {
		p.reject(tx, ev, req, rej, now, tok.ClientToken, tok.HasClientToken)
		return nil
	}
	p.send(tx, req, "get/accepted", out, ev.Envelope.RequestID)
	return nil
}

func (p *Processor) delete(tx *processors.Tx, ev *processors.Event, req *Request, now int64) error {
	tok, rej := p.token(ev)
	if rej != nil {
		p.reject(tx, ev, req, rej, now, tok.ClientToken, tok.HasClientToken)
		return nil
	}
	key := Key(req.Thing, req.Name)
	cur, err := p.load(tx, key, req)
	if err != nil {
		p.reject(tx, ev, req, document.ErrInternal, now, tok.ClientToken, tok.HasClientToken)
		return err
	}
	next, accepted, stored, rej := document.Delete(cur, tok, now)
	if rej != nil {
		p.reject(tx, ev, req, rej, now, tok.ClientToken, tok.HasClientToken)
		return nil
	}
	if err := tx.Set(key, stored); err != nil {
		p.reject(tx, ev, req, document.ErrInternal, now, tok.ClientToken, tok.HasClientToken)
		return fmt.Errorf("shadow %s: write state: %w", key, err)
	}
	p.memoize(tx, key, &next)
	o := p.newOutbox(tx, req, 2, 4+hasID(ev), len(ev.Envelope.RequestID))
	o.send("delete/accepted", accepted, ev.Envelope.RequestID)
	o.changelog(key, stored)
	return nil
}

// token parses the optional payload of a get or delete.
func (p *Processor) token(ev *processors.Event) (document.Token, *document.Error) {
	if rej := document.CheckPayload(ev.Payload, p.opts.Limits); rej != nil {
		return document.Token{}, rej
	}
	return document.ParseRequestPayload(ev.Payload, isBlank(ev.Payload), p.opts.Limits)
}

// hasID is 1 when the event has a request id (its answer carries one
// more header), else 0.
func hasID(ev *processors.Event) int {
	if ev.Envelope.RequestID != "" {
		return 1
	}
	return 0
}

func isBlank(b []byte) bool {
	for _, c := range b {
		if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

// reject emits the error document on the operation's rejected topic.
func (p *Processor) reject(tx *processors.Tx, ev *processors.Event, req *Request, e *document.Error, now int64, token string, hasToken bool) {
	out := document.AppendError(make([]byte, 0, 96+len(e.Message)+len(token)), e, now, token, hasToken)
	p.send(tx, req, string(req.Op)+"/rejected", out, ev.Envelope.RequestID)
}

// rejectEarly rejects a request before its payload was parsed, echoing
// its clientToken when the payload has a valid one.
func (p *Processor) rejectEarly(tx *processors.Tx, ev *processors.Event, req *Request, e *document.Error, now int64) {
	tok, _ := p.token(ev)
	p.reject(tx, ev, req, e, now, tok.ClientToken, tok.HasClientToken)
}

// send emits one message to the shadow's response topic suffix.
func (p *Processor) send(tx *processors.Tx, req *Request, suffix string, body []byte, requestID string) {
	o := p.newOutbox(tx, req, 1, 4, len(requestID))
	o.send(suffix, body, requestID)
}
