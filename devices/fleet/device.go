package fleet

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotpipe/iotpipe/devices/profile"
)

// device is one simulated device; only its own goroutine touches it,
// except the callbacks of its sessions.
type device struct {
	f       *fleet
	id      string
	topic   string
	shadow  string // $aws/things/{id}/shadow/update
	gen     *profile.Generator
	timing  *rand.Rand
	sess    *session // nil while offline
	last    *profile.Point
	reports int
	deltas  chan map[string]any
}

// session is one MQTT connection of a device.
type session struct {
	client  paho.Client
	mu      sync.Mutex
	conn    net.Conn
	pending chan *inflight
	done    chan struct{} // the ack goroutine ended
	abort   chan struct{} // closed to stop waiting for acknowledgements
	drop    atomic.Bool   // the device dropped the connection on purpose
	lost    chan error
}

// inflight is one publish waiting for its acknowledgement.
type inflight struct {
	tok  paho.Token
	pt   *profile.Point // nil for a shadow report
	sent time.Time
}

func (f *fleet) newDevice(i int) *device {
	id := f.p.Device(i)
	return &device{
		f: f, id: id, topic: f.p.TopicFor(id),
		shadow: "$aws/things/" + id + "/shadow/update",
		gen:    f.p.NewGenerator(f.cfg.Seed, i),
		timing: profile.Rand(f.cfg.Seed, i, profile.StreamTiming),
		deltas: make(chan map[string]any, 16),
	}
}

// connect opens a session; it is the device's only connection.
func (d *device) connect(ctx context.Context) error {
	f := d.f
	s := &session{
		pending: make(chan *inflight, f.cfg.Window),
		done:    make(chan struct{}),
		abort:   make(chan struct{}),
		lost:    make(chan error, 1),
	}
	will, _ := json.Marshal(map[string]any{"device": d.id, "status": "offline", "clean": false})
	o := f.clientOptions(d.id, f.p.Connection.Keepalive).SetWill(f.p.WillTopicFor(d.id), string(will), 1, false)
	o.SetCustomOpenConnectionFn(func(uri *url.URL, _ paho.ClientOptions) (net.Conn, error) {
		conn, err := d.dial(ctx, uri.Host)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.conn = conn
		s.mu.Unlock()
		return conn, nil
	})
	o.SetConnectionLostHandler(func(_ paho.Client, err error) {
		select {
		case s.lost <- err:
		default:
		}
	})
	s.client = paho.NewClient(o)
	if err := wait(ctx, s.client.Connect(), 15*time.Second); err != nil {
		s.client.Disconnect(0)
		return fmt.Errorf("device %s: connect: %w", d.id, err)
	}
	go d.acks(s)
	if !f.cfg.NoShadows && (f.p.Shadow.ReportEvery > 0 || f.p.Shadow.DesiredEvery > 0) {
		tok := s.client.Subscribe(d.shadow+"/delta", 1, func(_ paho.Client, m paho.Message) {
			var delta struct {
				State map[string]any `json:"state"`
			}
			if json.Unmarshal(m.Payload(), &delta) != nil || len(delta.State) == 0 {
				return
			}
			f.stats.deltas.Add(1)
			select {
			case d.deltas <- delta.State:
			default: // the device is far behind; a later delta repeats the difference
			}
		})
		if err := wait(ctx, tok, 15*time.Second); err != nil {
			s.client.Disconnect(0)
			return fmt.Errorf("device %s: subscribe to its shadow deltas: %w", d.id, err)
		}
	}
	d.sess = s
	f.online.Add(1)
	return nil
}

// dial opens the TCP connection, with TLS when the fleet has a TLS hook.
func (d *device) dial(ctx context.Context, addr string) (net.Conn, error) {
	dl := net.Dialer{Timeout: 10 * time.Second}
	conn, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil || d.f.cfg.TLS == nil {
		return conn, err
	}
	tc, err := d.f.cfg.TLS(d.id)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS configuration of %s: %w", d.id, err)
	}
	tconn := tls.Client(conn, tc)
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tconn.HandshakeContext(hctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tconn, nil
}

// wait waits for a paho token, ctx or the timeout.
func wait(ctx context.Context, tok paho.Token, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("no answer from the broker within " + timeout.String())
	}
}

// run sends the device's points from first on, one every f.every, until
// sendCtx ends, then settles what is in flight and disconnects.
func (d *device) run(sendCtx, ctx context.Context, first time.Time) {
	f := d.f
	defer d.finish()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for k := int64(0); ; {
		if d.sess == nil {
			if !d.reconnect(sendCtx) {
				return
			}
			// Points fall due only while the device is online.
			if behind := time.Since(first); behind > 0 {
				k = max(k, int64(behind/f.every)+1)
			}
		}
		at := first.Add(time.Duration(k) * f.every)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(time.Until(at))
		select {
		case <-timer.C:
		case <-sendCtx.Done():
			return
		case st := <-d.deltas:
			d.report(st, true)
			continue
		case err := <-d.sess.lost:
			d.lose(err)
			continue
		}
		k++
		pt := d.gen.Next()
		d.publishPoint(sendCtx, &pt)
		if f.cfg.NoShadows {
			pt.ReportShadow, pt.Desired = false, nil
		}
		if pt.ReportShadow {
			d.report(nil, false)
		}
		if pt.Desired != nil && f.op != nil {
			f.op.set(d.id, pt.Desired)
		}
		if !f.cfg.NoDisconnects && pt.Disconnect != profile.Stay {
			d.leave(sendCtx, pt.Disconnect)
		}
	}
}

// publishPoint publishes one telemetry point; it waits while the
// device's window of unacknowledged publishes is full.
func (d *device) publishPoint(ctx context.Context, pt *profile.Point) {
	now := time.Now()
	payload := d.f.p.AppendPayload(make([]byte, 0, 256), d.id, pt, now)
	d.last = pt
	tok := d.sess.client.Publish(d.topic, d.f.cfg.QoS, false, payload)
	d.f.stats.sent.Add(1)
	d.track(ctx, &inflight{tok: tok, pt: pt, sent: now})
}

// track queues a publish for the session's ack goroutine.
func (d *device) track(ctx context.Context, in *inflight) {
	select {
	case d.sess.pending <- in:
	case <-ctx.Done():
		// Sending is over: settle it here, within the drain period.
		d.settle(d.sess, in, waitSettle(in.tok, d.f.cfg.Drain))
	}
}

func waitSettle(tok paho.Token, d time.Duration) error {
	if !tok.WaitTimeout(d) {
		return errUnsettled
	}
	return tok.Error()
}

var errUnsettled = errors.New("not acknowledged when the run ended")

// acks settles a session's publishes in the order they were sent.
func (d *device) acks(s *session) {
	defer close(s.done)
	for in := range s.pending {
		var err error
		select {
		case <-in.tok.Done():
			err = in.tok.Error()
		case <-s.abort:
			err = errUnsettled
		}
		d.settle(s, in, err)
	}
}

// settle records the fate of one publish.
func (d *device) settle(s *session, in *inflight, err error) {
	f := d.f
	if in.pt == nil { // a shadow report
		if err != nil && !s.drop.Load() && !errors.Is(err, errUnsettled) {
			f.noteError(fmt.Errorf("device %s: shadow report: %w", d.id, err))
		}
		return
	}
	switch {
	case err == nil:
		f.stats.acked.Add(1)
		if a := in.pt.Anomaly; a != nil {
			f.stats.anomalies[kindIndex(a.Kind)].Add(1)
			if a.Index == 0 {
				f.stats.episodes.Add(1)
			}
		}
	case s.drop.Load():
		err = ErrDropped
		f.stats.dropped.Add(1)
	case errors.Is(err, errUnsettled):
		f.stats.unsettled.Add(1)
	default:
		f.stats.failed.Add(1)
		f.noteError(fmt.Errorf("device %s: publish: %w", d.id, err))
	}
	out := Outcome{Device: d.id, Point: in.pt, Sent: in.sent, Done: time.Now(), Acked: err == nil, Err: err}
	if f.truth != nil && in.pt.Anomaly != nil {
		f.truth.write(&out)
	}
	if f.cfg.OnPublish != nil {
		f.cfg.OnPublish(out)
	}
}

func kindIndex(k profile.Kind) int {
	for i, x := range profile.Kinds {
		if x == k {
			return i
		}
	}
	return 0
}

// report publishes the device's reported shadow state: the delta's
// state when answering one, else the profile's static state and the
// report fields' last values.
func (d *device) report(state map[string]any, delta bool) {
	if d.sess == nil {
		return
	}
	sh := d.f.p.Shadow
	if !delta {
		state = map[string]any{}
		for k, v := range sh.Reported {
			state[k] = v
		}
		if d.last != nil {
			for _, name := range sh.ReportFields {
				state[name] = d.last.Values[d.f.p.FieldIndex(name)]
			}
		}
	}
	d.reports++
	b, err := json.Marshal(map[string]any{
		"state":       map[string]any{"reported": state},
		"clientToken": fmt.Sprintf("%s-%d", d.id, d.reports),
	})
	if err != nil {
		d.f.noteError(fmt.Errorf("device %s: encode shadow report: %w", d.id, err))
		return
	}
	if delta {
		d.f.stats.deltaReports.Add(1)
	} else {
		d.f.stats.shadowReports.Add(1)
	}
	tok := d.sess.client.Publish(d.shadow, d.f.cfg.QoS, false, b)
	select {
	case d.sess.pending <- &inflight{tok: tok, sent: time.Now()}:
	default:
		// The window is full of telemetry: settle the report on its own.
		go func(s *session) { d.settle(s, &inflight{}, waitSettle(tok, d.f.cfg.Drain)) }(d.sess)
	}
}

// leave disconnects cleanly or drops the connection, stays offline for
// a while and reconnects with backoff (in run).
func (d *device) leave(ctx context.Context, how profile.Disconnect) {
	s := d.sess
	switch how {
	case profile.Clean:
		d.end(s, false)
		d.f.stats.clean.Add(1)
	case profile.Abrupt:
		d.end(s, true)
		d.f.stats.abrupt.Add(1)
	}
	c := d.f.p.Connection
	off := c.Offline.Min + time.Duration(d.timing.Float64()*float64(c.Offline.Max-c.Offline.Min))
	sleep(ctx, off)
}

// lose handles a connection the broker or the network ended.
func (d *device) lose(err error) {
	d.f.stats.lost.Add(1)
	d.f.noteError(fmt.Errorf("device %s: connection lost: %w", d.id, err))
	d.end(d.sess, false)
}

// end closes a session: abrupt closes the TCP connection under the
// client (no DISCONNECT, so the broker publishes the Will); otherwise
// the in-flight publishes settle first, then DISCONNECT.
func (d *device) end(s *session, abrupt bool) {
	d.sess = nil
	d.f.online.Add(-1)
	if abrupt {
		s.drop.Store(true)
		s.mu.Lock()
		if s.conn != nil {
			s.conn.Close()
		}
		s.mu.Unlock()
	}
	close(s.pending)
	// What was in flight at an abrupt drop is dropped, whatever its
	// token says later (paho may complete it only at its write timeout).
	grace := d.f.cfg.Drain
	if abrupt {
		grace = dropGrace
	}
	t := time.AfterFunc(grace, func() { close(s.abort) })
	<-s.done
	t.Stop()
	s.client.Disconnect(250)
}

// dropGrace is how long a dropped session's publishes may take to settle.
const dropGrace = time.Second

// reconnect connects again, with exponential backoff and full jitter
// between attempts, until it succeeds or ctx ends.
func (d *device) reconnect(ctx context.Context) bool {
	c := d.f.p.Connection
	backoff := c.BackoffInitial
	for ctx.Err() == nil {
		err := d.connect(ctx)
		if err == nil {
			d.f.stats.reconnects.Add(1)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d.f.stats.connectFailures.Add(1)
		d.f.cfg.Logger.Debug("connect failed", "device", d.id, "err", err, "backoff", backoff)
		sleep(ctx, time.Duration(d.timing.Float64()*float64(backoff)))
		backoff = min(2*backoff, c.BackoffMax)
	}
	return false
}

// finish settles what is in flight and disconnects at the end of the run.
func (d *device) finish() {
	if d.sess != nil {
		d.end(d.sess, false)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
