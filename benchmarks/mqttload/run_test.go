package mqttload

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

func TestRunQoS1CountMochi(t *testing.T) {
	addr, counter := startMochi(t)
	tests := []struct {
		name   string
		conns  int
		count  int64
		window int
	}{
		{"even split", 10, 5000, 64},
		{"uneven split, window 1", 7, 3001, 1},
		{"window wraps packet ids", 2, 140000, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := counter.n.Load()
			res, err := Run(testCtx(t, 60*time.Second), Config{
				Addr: addr, Conns: tt.conns, QoS: 1, Count: tt.count, Window: tt.window,
				ClientPrefix: "qos1-" + strings.ReplaceAll(tt.name, " ", "-") + "-",
			})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			n := uint64(tt.count)
			if res.Sent != n || res.Acked != n || res.TotalSent != n || res.TotalAcked != n || res.Unacked != 0 {
				t.Errorf("sent %d acked %d total sent %d total acked %d unacked %d, want %d acknowledged exactly",
					res.Sent, res.Acked, res.TotalSent, res.TotalAcked, res.Unacked, n)
			}
			if res.Latency.Count != n {
				t.Errorf("latency samples %d, want %d", res.Latency.Count, n)
			}
			if res.Latency.Max <= 0 || res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.Max {
				t.Errorf("implausible latency summary %+v", res.Latency)
			}
			if res.Errors != 0 || res.OutOfOrder != 0 {
				t.Errorf("errors %d %v, out of order %d", res.Errors, res.ErrorSamples, res.OutOfOrder)
			}
			if got := counter.n.Load() - before; got != tt.count {
				t.Errorf("broker received %d PUBLISHes, want %d", got, tt.count)
			}
		})
	}
}

func TestRunQoS0CountMochi(t *testing.T) {
	addr, counter := startMochi(t)
	const count = 20000
	res, err := Run(testCtx(t, 60*time.Second), Config{Addr: addr, Conns: 8, QoS: 0, Count: count, Size: 300})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Sent != count || res.TotalSent != count || res.Acked != 0 || res.Unacked != 0 || res.Latency.Count != 0 {
		t.Errorf("result %+v, want %d sent, nothing acked", res, count)
	}
	if res.Errors != 0 {
		t.Errorf("errors: %v", res.ErrorSamples)
	}
	// QoS 0 has no acknowledgement: the broker may still be reading.
	deadline := time.Now().Add(10 * time.Second)
	for counter.n.Load() < count && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := counter.n.Load(); got != count {
		t.Errorf("broker received %d PUBLISHes, want %d", got, count)
	}
}

func TestRunDurationWarmupMochi(t *testing.T) {
	addr, counter := startMochi(t)
	var progress []Progress
	res, err := Run(testCtx(t, 60*time.Second), Config{
		Addr: addr, Conns: 4, QoS: 1, Duration: 600 * time.Millisecond, Warmup: 300 * time.Millisecond,
		Progress: func(p Progress) { progress = append(progress, p) }, ProgressInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Sent == 0 || res.TotalSent <= res.Sent {
		t.Errorf("sent %d in window, %d in total: want load both in warm-up and window", res.Sent, res.TotalSent)
	}
	if res.TotalAcked != res.TotalSent || res.Unacked != 0 {
		t.Errorf("total sent %d acked %d unacked %d", res.TotalSent, res.TotalAcked, res.Unacked)
	}
	if got := counter.n.Load(); got != int64(res.TotalSent) {
		t.Errorf("broker received %d, generator sent %d", got, res.TotalSent)
	}
	// Latencies cover messages sent in the window only: no more than were
	// sent in it plus the window's in-flight at its start.
	if res.Latency.Count == 0 || res.Latency.Count > res.Sent+uint64(4*DefaultWindow) || res.Latency.Count >= res.TotalSent {
		t.Errorf("latency samples %d for %d sent in the window (%d in total)", res.Latency.Count, res.Sent, res.TotalSent)
	}
	if res.Duration < 600*time.Millisecond {
		t.Errorf("measured window %s, want at least 600ms", res.Duration)
	}
	phases := map[Phase]bool{}
	for _, p := range progress {
		phases[p.Phase] = true
	}
	if !phases[PhaseWarmup] || !phases[PhaseMeasure] {
		t.Errorf("progress phases %v, want warmup and measure", phases)
	}
}

func TestRunRateLimitMochi(t *testing.T) {
	addr, _ := startMochi(t)
	const (
		rate  = 2000.0
		conns = 5
	)
	res, err := Run(testCtx(t, 60*time.Second), Config{Addr: addr, Conns: conns, QoS: 1, Rate: rate, Duration: 2 * time.Second})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The pacer never releases more than its schedule: one message per
	// connection at the start, then rate/conns per second each. The run
	// lasted the window plus the time to stop writers (well under 500ms).
	elapsed := res.Duration + 500*time.Millisecond
	maxSent := uint64(rate*elapsed.Seconds()) + conns
	if res.TotalSent > maxSent {
		t.Errorf("sent %d in %s, more than the schedule allows (%d)", res.TotalSent, res.Duration, maxSent)
	}
	// It also catches up after any stall, so the window holds its share.
	if min := uint64(0.8 * rate * res.Duration.Seconds()); res.Sent < min {
		t.Errorf("sent %d in %s, want at least %d at %v msg/s", res.Sent, res.Duration, min, rate)
	}
	if res.TotalAcked != res.TotalSent || res.Errors != 0 {
		t.Errorf("acked %d of %d, errors %v", res.TotalAcked, res.TotalSent, res.ErrorSamples)
	}
}

func TestRunSubscriberMochi(t *testing.T) {
	addr, _ := startMochi(t)
	const count = 3000
	res, err := Run(testCtx(t, 60*time.Second), Config{
		Addr: addr, Conns: 3, QoS: 1, Count: count, Subscribe: "bench/#", SubscribeQoS: 1, Drain: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.TotalAcked != count {
		t.Errorf("acked %d, want %d", res.TotalAcked, count)
	}
	if res.TotalReceived != count {
		t.Errorf("subscriber received %d of %d", res.TotalReceived, count)
	}
	if res.DeliveredPerSec <= 0 {
		t.Errorf("delivered rate %v, want the subscriber's receive rate", res.DeliveredPerSec)
	}
}

func TestRunMosquitto(t *testing.T) {
	addr := startMosquitto(t)
	const count = 20000
	res, err := Run(testCtx(t, 60*time.Second), Config{
		Addr: addr, Conns: 20, QoS: 1, Count: count, Subscribe: "bench/#", SubscribeQoS: 1,
	})
	if err != nil {
		t.Fatalf("Run against mosquitto: %v", err)
	}
	if res.Sent != count || res.Acked != count || res.Unacked != 0 || res.Errors != 0 || res.OutOfOrder != 0 {
		t.Errorf("result %+v, want %d sent and acknowledged in order", res, count)
	}
	if res.TotalReceived != count {
		t.Errorf("subscriber received %d of %d", res.TotalReceived, count)
	}
	res0, err := Run(testCtx(t, 60*time.Second), Config{Addr: addr, Conns: 5, QoS: 0, Count: 5000, ClientPrefix: "q0-"})
	if err != nil {
		t.Fatalf("QoS 0 run against mosquitto: %v", err)
	}
	if res0.TotalSent != 5000 || res0.Errors != 0 {
		t.Errorf("QoS 0 result %+v", res0)
	}
}

func TestRunMosquittoSubscriberReceivesAll(t *testing.T) {
	addr := startMosquitto(t)
	const count = 10000
	res, err := Run(testCtx(t, 60*time.Second), Config{
		Addr: addr, Conns: 10, QoS: 1, Count: count, Subscribe: "bench/#", SubscribeQoS: 1, Drain: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.TotalAcked != count {
		t.Fatalf("acked %d of %d", res.TotalAcked, count)
	}
	if res.TotalReceived != count {
		t.Errorf("subscriber received %d of %d", res.TotalReceived, count)
	}
}

func TestRunBrokerErrors(t *testing.T) {
	httpServer := fakeBroker(t, func(c net.Conn, r *bufio.Reader) {
		_, _ = r.ReadByte()
		_, _ = c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
	})
	refusing := fakeBroker(t, func(c net.Conn, r *bufio.Reader) {
		if _, _, err := (packetReader{r}).next(); err != nil {
			return
		}
		_, _ = c.Write([]byte{0x20, 0x02, 0x00, 0x05})
	})
	silent := fakeBroker(t, func(c net.Conn, r *bufio.Reader) {
		_, _ = drainReader(r)
	})
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"not MQTT", Config{Addr: httpServer, Conns: 2, QoS: 1, Count: 10}, []string{"expected CONNACK", "non-MQTT port", "2 of 2 connections failed"}},
		{"refused", Config{Addr: refusing, Conns: 1, QoS: 1, Count: 10}, []string{"return code 5", "not authorized"}},
		{"no CONNACK", Config{Addr: silent, Conns: 1, QoS: 1, Count: 10, DialTimeout: 300 * time.Millisecond}, []string{"reading CONNACK", "timeout"}},
		{"nothing listening", Config{Addr: freeAddr(t), Conns: 1, QoS: 1, Count: 10}, []string{"dialing", "refused"}},
		{"bad config", Config{Addr: refusing, QoS: 2, Count: 10, Size: 10}, []string{"invalid load configuration", "qos must be 0 or 1", "size must be between"}},
		{"duration and count", Config{Addr: refusing, Count: 10, Duration: time.Second}, []string{"exactly one of duration and count"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Run(testCtx(t, 20*time.Second), tt.cfg)
			if err == nil {
				t.Fatal("Run succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestRunBrokerMisbehavesAfterConnect(t *testing.T) {
	tests := []struct {
		name  string
		reply []byte // sent after the first PUBLISH
		want  string
	}{
		{"PUBACK id out of range", []byte{0x40, 0x02, 0xff, 0xff}, "that was never sent"},
		{"PUBACK id zero", []byte{0x40, 0x02, 0x00, 0x00}, "that was never sent"},
		{"PUBACK id not in flight", []byte{0x40, 0x02, 0x7f, 0x00}, "not in flight"},
		{"duplicate PUBACK", []byte{0x40, 0x02, 0x00, 0x01, 0x40, 0x02, 0x00, 0x01}, "not in flight"},
		{"unexpected packet", []byte{0x90, 0x03, 0x00, 0x01, 0x00}, "unexpected SUBACK"},
		{"bad remaining length", []byte{0x40, 0xff, 0xff, 0xff, 0xff, 0x01}, "remaining length longer than 4 bytes"},
		{"connection closed", nil, "reading from broker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := fakeBroker(t, func(c net.Conn, r *bufio.Reader) {
				pr := packetReader{r}
				if _, _, err := pr.next(); err != nil {
					return
				}
				_, _ = c.Write([]byte{0x20, 0x02, 0x00, 0x00})
				if _, _, err := pr.next(); err != nil {
					return
				}
				_, _ = c.Write(tt.reply)
				if tt.reply == nil {
					return
				}
				_, _ = drainReader(r)
			})
			res, err := Run(testCtx(t, 20*time.Second), Config{Addr: addr, Conns: 1, QoS: 1, Count: 100, Drain: time.Second})
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Errors != 1 || len(res.ErrorSamples) != 1 || !strings.Contains(res.ErrorSamples[0], tt.want) {
				t.Fatalf("errors %d %q, want one mentioning %q", res.Errors, res.ErrorSamples, tt.want)
			}
			if res.Unacked == 0 {
				t.Errorf("unacked 0, want the messages the broker never acknowledged")
			}
		})
	}
}

// drainReader reads r until EOF or error.
func drainReader(r *bufio.Reader) (int64, error) {
	var n int64
	buf := make([]byte, 4096)
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
}

// A broker that stops reading (its buffers full of a QoS 0 flood) must not
// hang the end of a run: writers give up after the drain period.
func TestRunBrokerStopsReading(t *testing.T) {
	stall := make(chan struct{})
	t.Cleanup(func() { close(stall) })
	addr := fakeBroker(t, func(c net.Conn, r *bufio.Reader) {
		if _, _, err := (packetReader{r}).next(); err != nil {
			return
		}
		_, _ = c.Write([]byte{0x20, 0x02, 0x00, 0x00})
		<-stall
	})
	start := time.Now()
	res, err := Run(testCtx(t, 30*time.Second), Config{Addr: addr, Conns: 2, QoS: 0, Duration: 300 * time.Millisecond, Drain: 300 * time.Millisecond})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Errors != 0 || res.TotalSent == 0 {
		t.Errorf("errors %v, sent %d: want a clean stop after some messages", res.ErrorSamples, res.TotalSent)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("run took %s with a stalled broker", took)
	}
}
