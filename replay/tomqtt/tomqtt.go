// Package tomqtt re-publishes events of the log over MQTT under a topic
// prefix, with their original spacing or faster (iotpipe replay
// --to-mqtt): real history driving a test environment. It is the one
// part of replay with an effect, and runs only when asked for.
package tomqtt

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotpipe/iotpipe/replay"
	"github.com/iotpipe/iotpipe/schemas"
)

// Defaults for Options fields left at their zero value.
const (
	DefaultAddr   = "127.0.0.1:1883"
	DefaultWindow = 64
)

// Options configure a Publisher.
type Options struct {
	// Addr is the broker's host:port (default DefaultAddr).
	Addr string
	// TLS, when set, connects over TLS with it (a client certificate,
	// the server's CA); nil is plain TCP.
	TLS *tls.Config
	// Username and Password are sent in CONNECT when Username is set
	// (iotpipe: a token as the password).
	Username, Password string
	// ClientID defaults to iotpipe-replay-<random>.
	ClientID string
	// Prefix is put before each event's topic: Prefix/<topic>. Required,
	// with no wildcard and no empty level.
	Prefix string
	// Speed divides the events' spacing: 1 keeps it, 10 is ten times
	// faster, 0 sends each as soon as the one before was handed over
	// (max).
	Speed float64
	// Window bounds the QoS 1 publishes not yet acknowledged (default
	// DefaultWindow).
	Window int
}

// Stats count what a Publisher did.
type Stats struct {
	// Published counts events re-published and acknowledged (QoS 0:
	// written); Failed those that were not; Skipped the events that are
	// not device publishes (lifecycle events, undecodable records).
	Published, Failed, Skipped int64
	// Span is the receive time between the first and the last event
	// re-published; Took how long re-publishing them took.
	Span, Took time.Duration
}

// Publisher re-publishes events in the order they are added, each when
// it is due: its receive time's distance from the first event's, divided
// by the speed, after the first was sent.
type Publisher struct {
	o     Options
	cl    paho.Client
	slots chan struct{}
	wg    sync.WaitGroup

	first, last time.Time // receive times
	start       time.Time // when the first was sent

	mu      sync.Mutex
	stats   Stats
	firstEr error
}

// CheckPrefix says why prefix cannot prefix topics, nil when it can.
func CheckPrefix(prefix string) error {
	switch {
	case prefix == "":
		return errors.New("empty topic prefix")
	case strings.ContainsAny(prefix, "+#\x00"):
		return fmt.Errorf("topic prefix %q: no wildcard (+, #) in a topic", prefix)
	case strings.HasPrefix(prefix, "$"):
		return fmt.Errorf("topic prefix %q: $ topics are the broker's (shadows, lifecycle events)", prefix)
	case strings.Contains("/"+prefix+"/", "//"):
		return fmt.Errorf("topic prefix %q: no empty level", prefix)
	}
	return nil
}

// Topic is the topic an event of topic is re-published on.
func Topic(prefix, topic string) string { return prefix + "/" + topic }

// New connects to the broker.
func New(ctx context.Context, o Options) (*Publisher, error) {
	if err := CheckPrefix(o.Prefix); err != nil {
		return nil, err
	}
	if o.Speed < 0 {
		return nil, fmt.Errorf("speed %v: want 0 (max) or more", o.Speed)
	}
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.ClientID == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		o.ClientID = "iotpipe-replay-" + hex.EncodeToString(b)
	}
	scheme := "tcp://"
	if o.TLS != nil {
		scheme = "ssl://"
	}
	po := paho.NewClientOptions().AddBroker(scheme + o.Addr).SetClientID(o.ClientID).SetCleanSession(true).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true).SetConnectTimeout(10 * time.Second)
	if o.TLS != nil {
		po.SetTLSConfig(o.TLS)
	}
	if o.Username != "" {
		po.SetUsername(o.Username).SetPassword(o.Password)
	}
	cl := paho.NewClient(po)
	tok := cl.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect to %s%s as %s: %w", scheme, o.Addr, o.ClientID, err)
	}
	return &Publisher{o: o, cl: cl, slots: make(chan struct{}, o.Window)}, nil
}

// ackTimeout bounds the wait for a publish's acknowledgement.
const ackTimeout = 30 * time.Second

// Due is when an event received at rx is sent: start plus its receive
// time's distance from first's, divided by speed (0: at once).
func Due(start, first, rx time.Time, speed float64) time.Time {
	if speed == 0 || rx.Before(first) {
		return start
	}
	return start.Add(time.Duration(float64(rx.Sub(first)) / speed))
}

// Add re-publishes ev once it is due (device publishes only: the rest is
// counted as skipped). It returns early only when ctx ends.
func (p *Publisher) Add(ctx context.Context, ev *replay.Event) error {
	if ev.Err != nil || ev.Envelope.Type != schemas.EventPublish {
		p.mu.Lock()
		p.stats.Skipped++
		p.mu.Unlock()
		return nil
	}
	rx := ev.Time()
	if p.start.IsZero() {
		p.first, p.start = rx, time.Now()
	} else if d := time.Until(Due(p.start, p.first, rx, p.o.Speed)); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	if rx.After(p.last) {
		p.last = rx
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	qos := min(ev.Envelope.QoS, 1)
	payload := append([]byte(nil), ev.Payload...)
	tok := p.cl.Publish(Topic(p.o.Prefix, ev.Envelope.Topic), qos, false, payload)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var err error
		if !tok.WaitTimeout(ackTimeout) {
			err = fmt.Errorf("not acknowledged within %v", ackTimeout)
		} else {
			err = tok.Error()
		}
		<-p.slots
		p.mu.Lock()
		defer p.mu.Unlock()
		if err != nil {
			p.stats.Failed++
			if p.firstEr == nil {
				p.firstEr = fmt.Errorf("publish to %s: %w", Topic(p.o.Prefix, ev.Envelope.Topic), err)
			}
			return
		}
		p.stats.Published++
	}()
	return nil
}

// Close waits for the publishes in flight, disconnects, and returns the
// counts and the first publish failure.
func (p *Publisher) Close() (Stats, error) {
	p.wg.Wait()
	p.cl.Disconnect(250)
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	if !p.start.IsZero() {
		s.Span, s.Took = p.last.Sub(p.first), time.Since(p.start)
	}
	return s, p.firstEr
}
