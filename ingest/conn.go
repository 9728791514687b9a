package ingest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/twmb/franz-go/pkg/kgo"
)

// pending is one PUBLISH on its way to the log, with its record: one
// allocation per message. It is the record's Context (so the produce
// promise finds it without a closure per message); its own Context is
// Background, so franz-go never sees it cancelled.
type pending struct {
	context.Context
	rec   kgo.Record
	hdrs  [9]kgo.RecordHeader // the record's headers, without a second allocation
	pk    packets.Packet
	ack   bool         // a client's QoS 1 publish: answer with a PUBACK
	state atomic.Int32 // inFlight, logged, failed, timedOut or refused
	code  byte         // the PUBACK reason code of a refused publish
	start time.Time
	c     *conn
}

const (
	inFlight int32 = iota
	logged
	failed
	// timedOut: the writer answered it as failed at AckTimeout; its
	// produce promise frees its in-flight slot when the log answers.
	timedOut
	// refused: never produced; answered with a PUBACK with its code.
	refused
)

// conn is the per-connection half of the hot path: a bounded FIFO of
// publishes in the order they arrived, completed by produce callbacks in
// any order, acknowledged by one writer goroutine in arrival order with
// every ready PUBACK in one write. The writer runs only while there is
// something to answer: the first push starts it, and it exits once the
// FIFO has been empty for writerIdle (an idle connection holds neither
// the goroutine nor the FIFO's slots).
type conn struct {
	s    *Server
	cl   *mqtt.Client
	v5   bool
	sem  chan struct{} // in-flight bound, taken by the reader
	wake chan struct{} // cap 1: something completed
	mu   sync.Mutex
	// ring holds the FIFO's n entries from head on; it grows by
	// doubling up to MaxInFlight entries and is dropped when the
	// writer exits.
	ring []*pending
	head int // next to acknowledge
	n    int // entries in ring
	// writing is set while a writer goroutine runs (under mu): set by
	// the push that starts it, cleared by the writer as it exits with
	// the FIFO empty. n > 0 implies writing.
	writing bool
	gone    atomic.Bool
	// failedV3 is set by the writer once an MQTT 3.1.1 publish failed:
	// the connection is closing, and no later PUBACK may be written.
	failedV3 bool
	// session is the AWS-style session identifier of this connection.
	session string
	// principal and thing are this client's envelope principal and
	// attached thing, and key its default record key, computed once.
	principal string
	thing     string
	key       []byte // the record key of the client's own topics (read-only)
	// writerSubs and readerSubs remember whether the last topic each
	// goroutine looked at had subscribers (each used by one goroutine).
	writerSubs, readerSubs subCache
}

// subCache remembers whether topic had subscribers at subscription
// generation gen.
type subCache struct {
	topic string
	gen   uint64
	has   bool
}

// writerIdle is how long a connection's writer waits with an empty FIFO
// before it exits (Options.writerIdle).
const writerIdle = 5 * time.Second

// ringStart is the FIFO's first size.
const ringStart = 8

func newConn(s *Server, cl *mqtt.Client) *conn {
	c := &conn{
		s: s, cl: cl, v5: cl.Properties.ProtocolVersion == 5,
		// Zero-size elements: the channel's buffer takes no memory.
		sem:     make(chan struct{}, s.opts.MaxInFlight),
		wake:    make(chan struct{}, 1),
		session: newSessionID(),
	}
	c.principal, c.thing = s.auth.who(cl)
	c.key = []byte(schemas.EventKey(cl.ID, c.thing, ""))
	return c
}

// push appends p to the FIFO; the caller holds a sem slot. Into an
// empty FIFO it wakes the writer, which then arms its timer for p's
// AckTimeout, or starts it when none runs.
func (c *conn) push(p *pending) {
	c.mu.Lock()
	if c.n == len(c.ring) {
		c.grow()
	}
	c.ring[(c.head+c.n)%len(c.ring)] = p
	c.n++
	first := c.n == 1
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	switch {
	case start:
		go c.writer()
	case first:
		c.signal()
	}
}

// grow doubles the ring (c.mu held). It never needs more than
// MaxInFlight entries: each holds an in-flight slot.
func (c *conn) grow() {
	size := min(max(2*len(c.ring), ringStart), c.s.opts.MaxInFlight)
	ring := make([]*pending, size)
	for i := range c.n {
		ring[i] = c.ring[(c.head+i)%len(c.ring)]
	}
	c.ring, c.head = ring, 0
}

// acquire takes an in-flight slot, waiting while the connection has
// MaxInFlight publishes on their way to the log (back-pressure on this
// client alone). It gives up (false) when the server closes and, for
// the client's own publishes (own), when its connection closed: a
// reader does not wait on a log that does not answer for a client that
// is gone. Lifecycle events (own false) wait until the server closes.
func (c *conn) acquire(own bool) bool {
	select {
	case c.sem <- struct{}{}:
		return true
	default:
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case c.sem <- struct{}{}:
			return true
		case <-c.s.closing:
			return false
		case <-tick.C:
			if own && c.cl.Closed() {
				return false
			}
		}
	}
}

func (c *conn) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// close marks the connection gone; the writer drains what is queued
// (routing what the log accepted, acknowledging nothing) and exits.
func (c *conn) close() {
	c.gone.Store(true)
	c.signal()
}

// writer acknowledges and routes completed publishes in arrival order.
// A publish the log has not answered within AckTimeout counts as failed
// for the client (negative PUBACK or closed connection), so a client is
// never left waiting on a dead log; if the log takes it later it is
// logged but not routed, and the client's retry may log it twice
// (at-least-once for what was never acknowledged). Its in-flight slot
// stays taken until the log answers, so what one connection can pile up
// in the producer stays bounded by MaxInFlight.
//
// The writer exits once the FIFO is empty and the connection gone, or
// once it has been empty for writerIdle; it decides under c.mu, so a
// push either sees it running or starts the next one, and one writer
// at a time answers the FIFO.
func (c *conn) writer() {
	var ready []*pending
	var buf []byte
	timeout := c.s.opts.AckTimeout
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		ready = ready[:0]
		now := time.Now()
		var wait time.Duration
		c.mu.Lock()
		for c.n > 0 {
			p := c.ring[c.head]
			if p.state.Load() == inFlight {
				if age := now.Sub(p.start); age < timeout {
					wait = timeout - age
					break
				}
				if p.state.CompareAndSwap(inFlight, timedOut) {
					c.s.metrics.ackTimeouts.Inc()
				}
			}
			c.ring[c.head] = nil
			c.head = (c.head + 1) % len(c.ring)
			c.n--
			ready = append(ready, p)
		}
		empty := c.n == 0
		c.mu.Unlock()
		if len(ready) > 0 {
			c.answer(ready, &buf)
			clear(ready) // an idle connection keeps no publish (nor its payload) alive
		}
		if empty && c.gone.Load() && c.exit() {
			return
		}
		if empty {
			timer.Reset(c.s.opts.writerIdle)
		} else {
			timer.Reset(wait)
		}
		select {
		case <-c.wake:
		case <-timer.C:
			if empty && c.exit() {
				return
			}
		}
	}
}

// exit ends the writer if the FIFO is still empty: it drops the ring
// and clears writing, so the next push starts a writer afresh.
func (c *conn) exit() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n > 0 {
		return false
	}
	c.ring, c.head, c.writing = nil, 0, false
	return true
}

// answer acknowledges ready publishes in one write, routes the logged
// ones and frees the in-flight slots of those the log answered. A
// retained publish is routed (so retained) before its PUBACK is
// written, as mochi retains before it acknowledges: a client that
// subscribes once its publish is acknowledged gets the retained
// message. Routing keeps arrival order, so what came before the last
// retained publish of the batch is routed before the write too.
func (c *conn) answer(ready []*pending, buf *[]byte) {
	b := (*buf)[:0]
	var failure bool
	split := 0 // ready[:split] is routed before the write
	// unlogged counts the publishes the log did not take (refused ones,
	// answered with their own code, are counted where refused); why
	// says why, for the MQTT 5 code and the log line.
	var unlogged int
	var why refusal
	now := time.Now()
	for i, p := range ready {
		state := p.state.Load()
		if state == logged && p.pk.FixedHeader.Retain {
			split = i + 1
		}
		if !p.ack || c.failedV3 {
			continue
		}
		if state != logged && state != refused {
			if unlogged == 0 {
				why = c.s.logRefusal()
			}
			unlogged++
		}
		switch {
		case state == logged:
			// The PUBACK's latency as it is written (below, give or
			// take routing the retained publishes first).
			c.s.metrics.pubackLatency.Observe(now.Sub(p.start).Seconds())
			b = append(b, packets.Puback<<4, 2, byte(p.pk.PacketID>>8), byte(p.pk.PacketID))
		case c.v5:
			// MQTT 5: a PUBACK with a failure reason code.
			code := why.code
			if state == refused {
				code = p.code
			}
			b = append(b, packets.Puback<<4, 3, byte(p.pk.PacketID>>8), byte(p.pk.PacketID), code)
		default:
			// MQTT 3.1.1: acks of earlier publishes are written, none
			// of this one or of any later one.
			c.failedV3, failure = true, true
		}
	}
	*buf = b
	c.settle(ready[:split])
	if unlogged > 0 && !c.gone.Load() {
		// MQTT 3.1.1 has no negative PUBACK and forbids a server
		// DISCONNECT: close the network connection (below) so the
		// client retries the unacknowledged publishes.
		c.s.publishesRefused(c.cl.ID, unlogged, why, failure)
	}
	if len(b) > 0 && !c.gone.Load() {
		c.write(b)
	}
	if failure && !c.gone.Load() {
		c.cl.Stop(errLogUnavailable)
	}
	c.settle(ready[split:])
}

// settle routes the logged publishes of done and frees the in-flight
// slots of those the log answered.
func (c *conn) settle(done []*pending) {
	for _, p := range done {
		switch p.state.Load() {
		case logged:
			if c.mayHaveSubscribers(&c.writerSubs, &p.pk) {
				c.s.route(p.pk, c.cl.ID)
			}
		case timedOut:
			continue // its promise frees the slot
		}
		<-c.sem
	}
}

// mayHaveSubscribers reports whether routing pk could reach anyone: it
// is retained, or its topic had subscribers at the current subscription
// generation. Looking subscribers up allocates, so the answer for the
// connection's last topic is kept until a subscription changes.
func (c *conn) mayHaveSubscribers(sc *subCache, pk *packets.Packet) bool {
	if pk.FixedHeader.Retain {
		return true
	}
	gen := c.s.subGen.Load()
	if gen != sc.gen || pk.TopicName != sc.topic {
		subs := c.s.mqtt.Topics.Subscribers(pk.TopicName)
		sc.has = len(subs.Subscriptions)+len(subs.Shared)+len(subs.InlineSubscriptions) > 0
		sc.topic, sc.gen = pk.TopicName, gen
	}
	return sc.has
}

var errLogUnavailable = errors.New("event log unavailable: publish not acknowledged")

// write sends raw bytes on the client's connection under the client's
// lock (mochi's own writes take the same lock, so packets never
// interleave). A client that stops reading blocks only this writer.
func (c *conn) write(b []byte) {
	c.cl.Lock()
	defer c.cl.Unlock()
	if c.cl.Net.Conn == nil || c.cl.Closed() {
		return
	}
	if _, err := c.cl.Net.Conn.Write(b); err != nil {
		c.s.opts.Logger.Debug("write acks", "client", c.cl.ID, "err", err)
	}
}
