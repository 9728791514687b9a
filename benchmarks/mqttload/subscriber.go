package mqttload

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// subscriber is one connection subscribed to a topic filter that counts the
// PUBLISH packets it receives and acknowledges QoS 1 deliveries.
type subscriber struct {
	conn     net.Conn
	r        packetReader
	w        *bufio.Writer
	received atomic.Uint64
	// first and last are the times (ns since base) of the reads that
	// brought the first and the latest PUBLISH.
	base        time.Time
	first, last atomic.Int64
	closing     atomic.Bool
	done        chan struct{}
	errMu       sync.Mutex
	err         error
}

// startSubscriber connects, subscribes to cfg.Subscribe and starts counting.
func startSubscriber(ctx context.Context, cfg *Config) (*subscriber, error) {
	readBuf := max(256<<10, 2*cfg.Size+4096)
	clientID := cfg.ClientPrefix + "sub"
	conn, r, err := dialMQTT(ctx, cfg, clientID, readBuf)
	if err != nil {
		return nil, fmt.Errorf("subscriber: %w", err)
	}
	const subID = 1
	pkt, err := subscribePacket(subID, cfg.Subscribe, cfg.SubscribeQoS)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("subscriber: encoding SUBSCRIBE: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := conn.Write(pkt); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("subscriber: sending SUBSCRIBE: %w", err)
	}
	pr := packetReader{r}
	header, body, err := pr.next()
	if err == nil {
		_, err = parseSuback(header, body, subID)
	}
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("subscriber: subscribing to %q: %w", cfg.Subscribe, err)
	}
	_ = conn.SetDeadline(time.Time{})
	s := &subscriber{conn: conn, r: pr, w: bufio.NewWriterSize(conn, 16<<10), done: make(chan struct{}), base: time.Now()}
	go s.loop()
	return s, nil
}

func (s *subscriber) loop() {
	defer close(s.done)
	var n uint64
	var ack [4]byte
	var readAt int64
	for {
		var header byte
		var body []byte
		var err error
		if s.r.r.Buffered() == 0 {
			s.received.Store(n)
			if n > 0 {
				s.last.Store(readAt)
			}
			if err := s.w.Flush(); err != nil {
				s.fail(fmt.Errorf("subscriber: sending PUBACK: %w", err))
				return
			}
			header, body, err = s.r.next()
			readAt = int64(time.Since(s.base))
		} else {
			header, body, err = s.r.next()
		}
		if err != nil {
			s.received.Store(n)
			if n > 0 {
				s.last.Store(readAt)
			}
			s.fail(fmt.Errorf("subscriber: reading: %w", err))
			return
		}
		switch header >> 4 {
		case typePublish:
			qos, id, err := parsePublish(header, body)
			if err != nil {
				s.fail(fmt.Errorf("subscriber: %w", err))
				return
			}
			if qos == 1 {
				if _, err := s.w.Write(appendPuback(ack[:0], id)); err != nil {
					s.fail(fmt.Errorf("subscriber: sending PUBACK: %w", err))
					return
				}
			} else if qos == 2 {
				s.fail(fmt.Errorf("subscriber: %w: QoS 2 delivery on a QoS 0 or 1 subscription", errMalformed))
				return
			}
			if n == 0 {
				s.first.Store(readAt)
			}
			n++
		case typePingresp:
		default:
			s.fail(fmt.Errorf("subscriber: %w: unexpected %s (first byte 0x%02x)", errMalformed, packetNames[header>>4], header))
			return
		}
	}
}

func (s *subscriber) fail(err error) {
	if s.closing.Load() {
		return
	}
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
	_ = s.conn.Close()
}

// Err returns the subscriber's first error.
func (s *subscriber) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

// close closes the connection and waits for the reader to stop. It sends
// no DISCONNECT: the reader goroutine may be mid-way through writing a
// PUBACK.
func (s *subscriber) close() {
	s.closing.Store(true)
	_ = s.conn.Close()
	<-s.done
}

// drain waits until the subscriber received want messages, stops
// receiving for 500ms, fails, or max elapses.
func (s *subscriber) drain(want uint64, max time.Duration) {
	deadline := time.Now().Add(max)
	last, lastAt := s.received.Load(), time.Now()
	for {
		n := s.received.Load()
		if n >= want || time.Now().After(deadline) {
			return
		}
		if n != last {
			last, lastAt = n, time.Now()
		} else if time.Since(lastAt) > 500*time.Millisecond {
			return
		}
		select {
		case <-s.done:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// deliveredPerSec is the subscriber's receive rate from its first to its
// latest message, or 0 before two reads.
func (s *subscriber) deliveredPerSec() float64 {
	span := time.Duration(s.last.Load() - s.first.Load())
	if span <= 0 {
		return 0
	}
	return float64(s.received.Load()) / span.Seconds()
}
