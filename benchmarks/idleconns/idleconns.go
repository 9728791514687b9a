// Package idleconns measures what a broker's idle MQTT connections and
// offline persistent sessions cost in memory: it reads the broker
// process's resident set (and, for iotpipe, its Go heap from /metrics)
// before and after opening N connections, and reports the difference per
// connection. Fleets are mostly idle connections, so this is the figure
// that says how many devices fit in a node's memory.
package idleconns

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Mode is what each of the N clients leaves behind.
type Mode string

const (
	// Idle clients connect (clean session), publish one QoS 1 message,
	// wait for its PUBACK and stay connected without a word more.
	Idle Mode = "idle"
	// Offline clients open a persistent session (clean session off),
	// subscribe to one topic at QoS 1 and disconnect: the broker keeps
	// the session.
	Offline Mode = "offline"
)

// Config is one measurement.
type Config struct {
	Addr string // broker's MQTT address host:port
	PID  int    // broker's process id (its /proc/PID/status is read)
	// MetricsURL, when set, is a Prometheus endpoint whose
	// go_memstats_heap_inuse_bytes, go_memstats_stack_inuse_bytes and
	// go_goroutines are read too.
	MetricsURL string
	// MetricsToken is the API token MetricsURL is read with (iotpipe's
	// /metrics needs one).
	MetricsToken string
	Conns        int
	Mode         Mode
	// Prefix starts every client id (default "idle-").
	Prefix string
	// Parallel is how many clients connect at once (default 64).
	Parallel int
	// Settle is how long to wait before each reading (default 10s:
	// an iotpipe connection's PUBACK writer ends after 5s without
	// work, so a connection is idle only after that).
	Settle time.Duration
}

// Sample is one reading of the broker's memory.
type Sample struct {
	RSS        int64 // bytes
	HeapInuse  int64 // bytes; 0 without MetricsURL
	StackInuse int64 // bytes of goroutine stacks; 0 without MetricsURL
	Goroutines int64
}

// Result is a measurement.
type Result struct {
	Conns         int
	Mode          Mode
	Before, After Sample
	ConnectTime   time.Duration // to open all connections
}

// RSSPerConn is the resident set grown per connection, in bytes.
func (r Result) RSSPerConn() float64 { return float64(r.After.RSS-r.Before.RSS) / float64(r.Conns) }

// HeapPerConn is the Go heap grown per connection, in bytes.
func (r Result) HeapPerConn() float64 {
	return float64(r.After.HeapInuse-r.Before.HeapInuse) / float64(r.Conns)
}

// StackPerConn is the goroutine stack memory grown per connection, in
// bytes.
func (r Result) StackPerConn() float64 {
	return float64(r.After.StackInuse-r.Before.StackInuse) / float64(r.Conns)
}

// GoroutinesPerConn is the broker's goroutines per connection.
func (r Result) GoroutinesPerConn() float64 {
	return float64(r.After.Goroutines-r.Before.Goroutines) / float64(r.Conns)
}

// ConnectRate is connections opened per second.
func (r Result) ConnectRate() float64 { return float64(r.Conns) / r.ConnectTime.Seconds() }

// Fleet is the open connections of a measurement; Close them when done.
type Fleet struct{ conns []net.Conn }

// Close closes every connection.
func (f *Fleet) Close() {
	for _, c := range f.conns {
		if c != nil { // offline clients closed theirs
			c.Close()
		}
	}
}

// Measure reads the broker's memory, opens cfg.Conns clients in cfg.Mode,
// waits cfg.Settle and reads it again. The returned Fleet holds the idle
// connections open until closed.
func Measure(ctx context.Context, cfg Config) (Result, *Fleet, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "idle-"
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 64
	}
	if cfg.Settle <= 0 {
		cfg.Settle = 10 * time.Second
	}
	res := Result{Conns: cfg.Conns, Mode: cfg.Mode}
	sleep(ctx, cfg.Settle)
	var err error
	if res.Before, err = Read(ctx, cfg.PID, cfg.MetricsURL, cfg.MetricsToken); err != nil {
		return res, nil, err
	}
	start := time.Now()
	fleet := &Fleet{conns: make([]net.Conn, cfg.Conns)}
	var wg sync.WaitGroup
	errs := make(chan error, cfg.Parallel)
	next := make(chan int)
	for w := 0; w < cfg.Parallel; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := open(ctx, cfg, fmt.Sprintf("%s%d", cfg.Prefix, i))
				if err != nil {
					errs <- err
					return
				}
				fleet.conns[i] = c
			}
		}()
	}
	var firstErr error
feed:
	for i := 0; i < cfg.Conns; i++ {
		select {
		case next <- i:
		case firstErr = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	if firstErr == nil {
		firstErr = <-errs
	}
	res.ConnectTime = time.Since(start)
	if firstErr != nil {
		fleet.Close()
		return res, nil, firstErr
	}
	sleep(ctx, cfg.Settle)
	if res.After, err = Read(ctx, cfg.PID, cfg.MetricsURL, cfg.MetricsToken); err != nil {
		fleet.Close()
		return res, nil, err
	}
	return res, fleet, ctx.Err()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// open connects one client and leaves it as the mode says: an idle
// connection (returned) or a closed one with its session kept.
func open(ctx context.Context, cfg Config, id string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", cfg.Addr, err)
	}
	fail := func(what string, err error) (net.Conn, error) {
		c.Close()
		return nil, fmt.Errorf("client %s: %s: %w", id, what, err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReaderSize(c, 64)
	clean := cfg.Mode != Offline
	if _, err := c.Write(Connect(id, clean, 1200)); err != nil {
		return fail("send CONNECT", err)
	}
	if typ, body, err := ReadPacket(r); err != nil || typ != 0x20 || len(body) < 2 || body[1] != 0 {
		return fail("CONNACK", errors.Join(err, fmt.Errorf("got 0x%x %v", typ, body)))
	}
	switch cfg.Mode {
	case Offline:
		if _, err := c.Write(Subscribe(1, "cmd/"+id)); err != nil {
			return fail("send SUBSCRIBE", err)
		}
		if typ, _, err := ReadPacket(r); err != nil || typ != 0x90 {
			return fail("SUBACK", errors.Join(err, fmt.Errorf("got 0x%x", typ)))
		}
		_, _ = c.Write([]byte{0xe0, 0}) // DISCONNECT: the session stays
		c.Close()
		return nil, nil
	default:
		if _, err := c.Write(Publish("idle/"+id, 1, []byte(`{"hello":1}`))); err != nil {
			return fail("send PUBLISH", err)
		}
		if typ, _, err := ReadPacket(r); err != nil || typ != 0x40 {
			return fail("PUBACK", errors.Join(err, fmt.Errorf("got 0x%x", typ)))
		}
		_ = c.SetDeadline(time.Time{})
		return c, nil
	}
}

// Read samples the process's resident set and, with metricsURL (read
// with the bearer token, when not empty), its Go heap and stacks in use
// and goroutines.
func Read(ctx context.Context, pid int, metricsURL, token string) (Sample, error) {
	var s Sample
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read the broker's memory: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return s, fmt.Errorf("parse VmRSS %q: %w", line, err)
			}
			s.RSS = kb << 10
		}
	}
	if metricsURL == "" {
		return s, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return s, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, fmt.Errorf("read %s: %w", metricsURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return s, fmt.Errorf("read %s: %w", metricsURL, err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_memstats_heap_inuse_bytes":
			s.HeapInuse = int64(f)
		case "go_memstats_stack_inuse_bytes":
			s.StackInuse = int64(f)
		case "go_goroutines":
			s.Goroutines = int64(f)
		}
	}
	return s, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func packet(header byte, body []byte) []byte {
	b := []byte{header}
	for n := len(body); ; {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			break
		}
	}
	return append(b, body...)
}

// Connect encodes an MQTT 3.1.1 CONNECT.
func Connect(id string, clean bool, keepalive uint16) []byte {
	flags := byte(0)
	if clean {
		flags = 0x02
	}
	body := appendString(nil, "MQTT")
	body = append(body, 4, flags)
	body = binary.BigEndian.AppendUint16(body, keepalive)
	return packet(0x10, appendString(body, id))
}

// Subscribe encodes a SUBSCRIBE to one filter at QoS 1.
func Subscribe(id uint16, filter string) []byte {
	body := binary.BigEndian.AppendUint16(nil, id)
	return packet(0x82, append(appendString(body, filter), 1))
}

// Publish encodes a QoS 1 PUBLISH.
func Publish(topic string, id uint16, payload []byte) []byte {
	body := binary.BigEndian.AppendUint16(appendString(nil, topic), id)
	return packet(0x32, append(body, payload...))
}

// ReadPacket reads one packet: its type (high nibble) and body.
func ReadPacket(r *bufio.Reader) (byte, []byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		if i == 4 {
			return 0, nil, errors.New("malformed remaining length")
		}
		n += int(b&0x7f) * mul
		mul *= 128
		if b&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return h & 0xf0, body, nil
}
