package mqttload

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// countHook counts the PUBLISH packets mochi receives from clients.
type countHook struct {
	mqtt.HookBase
	n atomic.Int64
}

func (h *countHook) ID() string { return "count" }

func (h *countHook) Provides(b byte) bool { return b == mqtt.OnPublish }

func (h *countHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.n.Add(1)
	return pk, nil
}

// freeAddr returns a free 127.0.0.1 TCP address.
func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("finding a free port: %v", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// startMochi runs an in-process mochi-mqtt broker with the allow-all auth
// hook and default routing; the returned hook counts received PUBLISHes.
func startMochi(tb testing.TB) (string, *countHook) {
	tb.Helper()
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		tb.Fatalf("adding allow-all hook: %v", err)
	}
	counter := new(countHook)
	if err := srv.AddHook(counter, nil); err != nil {
		tb.Fatalf("adding count hook: %v", err)
	}
	addr := freeAddr(tb)
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})); err != nil {
		tb.Fatalf("adding listener: %v", err)
	}
	go func() { _ = srv.Serve() }()
	tb.Cleanup(func() { _ = srv.Close() })
	waitListening(tb, addr)
	return addr, counter
}

// waitListening waits until addr accepts TCP connections.
func waitListening(tb testing.TB, addr string) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("broker at %s not listening: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mosquittoPath finds the mosquitto broker binary (Debian package
// mosquitto installs it in /usr/sbin, often not on PATH).
func mosquittoPath(tb testing.TB) string {
	tb.Helper()
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto"
	}
	tb.Fatal("mosquitto not found on PATH or in /usr/sbin: install the Debian package (apt-get install -y mosquitto); `make test` does")
	return ""
}

// startMosquitto runs a Mosquitto broker on a free port with a config like
// the one benchmarks/run-mqtt.sh uses.
func startMosquitto(tb testing.TB) string {
	tb.Helper()
	bin := mosquittoPath(tb)
	addr := freeAddr(tb)
	_, port, _ := net.SplitHostPort(addr)
	dir := tb.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	body := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nset_tcp_nodelay true\nmax_inflight_messages 0\nmax_queued_messages 1000000\nlog_dest stderr\nlog_type error\nlog_type warning\n", port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		tb.Fatalf("writing mosquitto config: %v", err)
	}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting %s: %v", bin, err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitListening(tb, addr)
	return addr
}

// fakeBroker accepts one connection at a time on a free port and runs
// serve on it; it is for protocol-error cases no real broker produces.
func fakeBroker(tb testing.TB, serve func(c net.Conn, r *bufio.Reader)) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listening: %v", err)
	}
	tb.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	return l.Addr().String()
}

// testCtx returns a context bounded well inside the test timeout.
func testCtx(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}
