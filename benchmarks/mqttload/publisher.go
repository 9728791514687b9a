package mqttload

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// runClock is the monotonic clock and stop signal shared by one run.
type runClock struct {
	base   time.Time
	stop   atomic.Bool
	stopCh chan struct{}
	// Latencies are recorded for messages sent in [from, to) (ns since base).
	from  atomic.Int64
	to    atomic.Int64
	phase atomic.Pointer[Phase]
}

func (c *runClock) setPhase(p Phase) { c.phase.Store(&p) }

// currentPhase returns the phase last set, PhaseMeasure by default.
func (c *runClock) currentPhase() Phase {
	if p := c.phase.Load(); p != nil {
		return *p
	}
	return PhaseMeasure
}

func newRunClock() *runClock {
	c := &runClock{base: time.Now(), stopCh: make(chan struct{})}
	c.to.Store(math.MaxInt64)
	return c
}

// now returns nanoseconds since the run's base on the monotonic clock.
func (c *runClock) now() int64 { return int64(time.Since(c.base)) }

// halt tells every writer to stop sending.
func (c *runClock) halt() {
	if c.stop.CompareAndSwap(false, true) {
		close(c.stopCh)
	}
}

// publisher is one publishing connection: a writer goroutine (run) and a
// reader goroutine (readLoop).
type publisher struct {
	idx    int
	conn   net.Conn
	w      *bufio.Writer
	r      packetReader
	tmpl   publishTemplate
	qos    byte
	clock  *runClock
	pacer  *pacer // nil: unpaced
	limit  uint64 // messages to send; 0: until stopped
	drain  time.Duration
	window uint64
	mask   uint64 // ring size - 1 (ring size is a power of two >= window)
	idMod  uint64 // packet ids cycle over 1..idMod; idMod is a multiple of the ring size
	// sendNs holds, per ring slot, send time (ns since the clock's base)
	// << 16 | packet id of the message in flight, or 0 when free.
	sendNs []atomic.Int64
	wake   chan struct{}

	_     [64]byte
	sent  atomic.Uint64 // written by the writer
	_     [56]byte
	acked atomic.Uint64 // written by the reader
	// wantAcked, when not 0, is the acknowledged count the writer waits
	// for; the reader wakes it once acked reaches it.
	wantAcked atomic.Uint64
	_         [48]byte

	hist       Histogram // reader only; read after readerDone
	outOfOrder uint64    // reader only
	readerDone chan struct{}
	closing    atomic.Bool
	errMu      sync.Mutex
	err        error
}

func newPublisher(idx int, cfg *Config, clock *runClock, conn net.Conn, r *bufio.Reader, tmpl publishTemplate, limit uint64) *publisher {
	p := &publisher{
		idx:        idx,
		conn:       conn,
		r:          packetReader{r},
		tmpl:       tmpl,
		qos:        cfg.QoS,
		clock:      clock,
		limit:      limit,
		drain:      cfg.Drain,
		wake:       make(chan struct{}, 1),
		readerDone: make(chan struct{}),
	}
	wbuf := 32 << 10
	if cfg.QoS > 0 {
		ring := uint64(1)
		for ring < uint64(cfg.Window) {
			ring <<= 1
		}
		p.window = uint64(cfg.Window)
		p.mask = ring - 1
		p.idMod = 65535 / ring * ring
		p.sendNs = make([]atomic.Int64, ring)
		wbuf = min(max(cfg.Window*len(tmpl.pkt), 8<<10), 64<<10)
	}
	p.w = bufio.NewWriterSize(conn, wbuf)
	if cfg.Rate > 0 {
		p.pacer = newPacer(0, cfg.Rate, cfg.Conns, idx)
	}
	return p
}

// fail records the first error and closes the connection.
func (p *publisher) fail(err error) {
	if err == nil || p.closing.Load() {
		return
	}
	p.errMu.Lock()
	if p.err == nil {
		p.err = fmt.Errorf("connection %d: %w", p.idx, err)
	}
	p.errMu.Unlock()
	_ = p.conn.Close()
}

// Err returns the connection's first error.
func (p *publisher) Err() error {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	return p.err
}

// run is the writer goroutine: it sends until the clock stops or the limit
// is reached, waits up to drain for outstanding PUBACKs, disconnects and
// waits for the reader to finish.
func (p *publisher) run(start <-chan struct{}) {
	<-start
	if err := p.send(); err != nil {
		var ne net.Error
		if p.clock.stop.Load() && errors.As(err, &ne) && ne.Timeout() {
			// Run set a write deadline when it stopped the load: the
			// broker was not reading (a QoS 0 flood fills its buffers).
			p.closing.Store(true)
		} else {
			p.fail(fmt.Errorf("sending: %w", err))
		}
	}
	if p.Err() == nil && p.qos > 0 {
		p.awaitAcks()
	}
	if p.Err() == nil {
		p.closing.Store(true)
		_, _ = p.w.Write(disconnectPacket)
		_ = p.w.Flush()
	}
	p.closing.Store(true)
	_ = p.conn.Close()
	<-p.readerDone
}

// send writes PUBLISH packets in batches: as many as the window, the pacer
// and the limit allow, flushing whenever it has to wait.
func (p *publisher) send() error {
	const batchMax = 256
	var seq uint64
	var timer *time.Timer
	for !p.clock.stop.Load() {
		if p.limit > 0 && seq >= p.limit {
			break
		}
		n := uint64(batchMax)
		if p.limit > 0 {
			n = min(n, p.limit-seq)
		}
		if p.qos > 0 {
			avail := p.window - (seq - p.acked.Load())
			if avail == 0 {
				if err := p.w.Flush(); err != nil {
					return err
				}
				if !p.waitAck(seq) {
					break
				}
				continue
			}
			n = min(n, avail)
		}
		now := max(p.clock.now(), 1) // 0 marks a free slot in sendNs
		if p.pacer != nil {
			due := p.pacer.due(now, seq)
			if due == 0 {
				if err := p.w.Flush(); err != nil {
					return err
				}
				d := time.Duration(p.pacer.at(seq) - now)
				if timer == nil {
					timer = time.NewTimer(d)
				} else {
					timer.Reset(d)
				}
				select {
				case <-timer.C:
				case <-p.clock.stopCh:
				}
				continue
			}
			n = min(n, due)
		}
		for range n {
			id := uint16(0)
			if p.qos > 0 {
				id = uint16(seq%p.idMod) + 1
				p.sendNs[seq&p.mask].Store(now<<16 | int64(id))
			}
			p.tmpl.set(id, seq)
			if _, err := p.w.Write(p.tmpl.pkt); err != nil {
				return err
			}
			seq++
		}
		p.sent.Store(seq)
		if p.pacer != nil {
			if err := p.w.Flush(); err != nil {
				return err
			}
		}
	}
	if timer != nil {
		timer.Stop()
	}
	return p.w.Flush()
}

// waitAck blocks, with the window full at seq sent, until a quarter of the
// window is free again (so that writes carry several messages rather than
// one syscall per PUBACK), the run stops, or the connection fails. It
// reports whether there is room in the window.
func (p *publisher) waitAck(seq uint64) bool {
	target := seq - p.window + max(p.window/4, 1)
	p.wantAcked.Store(target)
	defer p.wantAcked.Store(0)
	for p.acked.Load() < target {
		select {
		case <-p.wake:
		case <-p.clock.stopCh:
			return false
		case <-p.readerDone:
			return false
		}
	}
	return true
}

// awaitAcks waits up to the drain period for every sent message's PUBACK.
func (p *publisher) awaitAcks() {
	seq := p.sent.Load()
	deadline := time.NewTimer(p.drain)
	defer deadline.Stop()
	if seq == 0 {
		return
	}
	p.wantAcked.Store(seq)
	defer p.wantAcked.Store(0)
	for p.acked.Load() < seq {
		select {
		case <-p.wake:
		case <-deadline.C:
			return
		case <-p.readerDone:
			return
		}
	}
}

// readLoop is the reader goroutine: it matches PUBACKs to send times and
// records latencies until the connection closes.
func (p *publisher) readLoop() {
	defer close(p.readerDone)
	var acked uint64
	var now, from, to int64
	publish := func() {
		p.acked.Store(acked)
		if w := p.wantAcked.Load(); w != 0 && acked >= w {
			select {
			case p.wake <- struct{}{}:
			default:
			}
		}
	}
	for {
		var header byte
		var body []byte
		var err error
		if p.r.r.Buffered() == 0 {
			publish()
			header, body, err = p.r.next()
			now = p.clock.now()
			from, to = p.clock.from.Load(), p.clock.to.Load()
		} else {
			header, body, err = p.r.next()
		}
		if err != nil {
			publish()
			if !p.closing.Load() {
				p.fail(fmt.Errorf("reading from broker: %w", err))
			}
			return
		}
		switch header >> 4 {
		case typePuback:
			id, err := parsePuback(header, body)
			if err != nil {
				p.fail(err)
				return
			}
			if p.qos == 0 || id == 0 || uint64(id) > p.idMod {
				p.fail(fmt.Errorf("%w: PUBACK for packet id %d that was never sent", errMalformed, id))
				return
			}
			if want := uint16(acked%p.idMod) + 1; id != want {
				p.outOfOrder++
			}
			slot := p.sendNs[uint64(id-1)&p.mask].Load()
			if slot == 0 || uint16(slot) != id {
				p.fail(fmt.Errorf("%w: PUBACK for packet id %d that is not in flight (duplicate?)", errMalformed, id))
				return
			}
			p.sendNs[uint64(id-1)&p.mask].Store(0)
			sentAt := slot >> 16
			if sentAt >= from && sentAt < to {
				p.hist.Record(time.Duration(now - sentAt))
			}
			acked++
		case typePingresp:
		default:
			p.fail(fmt.Errorf("%w: unexpected %s (first byte 0x%02x) from broker", errMalformed, packetNames[header>>4], header))
			return
		}
	}
}
