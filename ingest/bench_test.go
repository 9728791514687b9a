package ingest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/benchmarks/idleconns"
	"github.com/iotpipe/iotpipe/benchmarks/mqttload"
	"github.com/iotpipe/iotpipe/ingest/registry"
)

// BenchmarkPublish measures the hot path end to end: mqttload's 200-byte
// publishes from up to 100 connections over TCP into an ingest server
// writing to an embedded log, every QoS 1 PUBACK after the log's
// acknowledgement, every QoS 0 publish waited for until the log has it.
// allocs/op counts the whole process (generator, ingest and the
// in-process broker) per message; msg/s is acknowledged (QoS 1) or logged
// (QoS 0) messages.
func BenchmarkPublish(b *testing.B) {
	for _, qos := range []byte{1, 0} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) {
			r := newRig(b, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			logged := func() float64 { return counterValue(r.srv.metrics.logged) }
			before := logged()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			res, err := mqttload.Run(context.Background(), mqttload.Config{Addr: r.addr, Conns: min(100, b.N), QoS: qos, Count: int64(b.N)})
			if err != nil {
				b.Fatal(err)
			}
			if res.Errors != 0 {
				b.Fatal(res.ErrorSamples)
			}
			for deadline := time.Now().Add(time.Minute); logged()-before < float64(b.N); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatalf("%v of %d publishes logged", logged()-before, b.N)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
		})
	}
}

// BenchmarkPublishLatency measures publish→PUBACK latency at a fixed
// rate, below what the machine can take: mqttload's 100 connections
// publish 200-byte QoS 1 messages at 30k/s in all into an ingest server
// writing to an embedded log (run it with -benchtime=600000x for 20 s).
// p50-ms and p99-ms are the generator's publish→PUBACK percentiles;
// cpu-us/msg is the process's CPU time (generator, ingest and the
// in-process broker) per message.
func BenchmarkPublishLatency(b *testing.B) {
	r := newRig(b, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before := cpu()
	b.ResetTimer()
	res, err := mqttload.Run(context.Background(), mqttload.Config{Addr: r.addr, Conns: min(100, b.N), QoS: 1, Count: int64(b.N), Rate: 30000})
	if err != nil {
		b.Fatal(err)
	}
	if res.Errors != 0 || res.Unacked != 0 {
		b.Fatalf("%d unacknowledged, errors: %v", res.Unacked, res.ErrorSamples)
	}
	b.ReportMetric(float64(res.Latency.P50)/1e6, "p50-ms")
	b.ReportMetric(float64(res.Latency.P99)/1e6, "p99-ms")
	b.ReportMetric(float64((cpu()-before).Microseconds())/float64(b.N), "cpu-us/msg")
}

// benchPolicy lets mqttload's clients (bench-<n>) connect and publish
// on bench/<client id>/telemetry: ${iot:ClientId} resolved per
// connection, every publish decided by the connection's Decider.
const benchPolicy = `{"Version":"2012-10-17","Statement":[
{"Effect":"Allow","Action":"iot:Connect","Resource":"client/bench-*"},
{"Effect":"Allow","Action":"iot:Publish","Resource":"topic/bench/${iot:ClientId}/telemetry"}]}`

// benchIdentity is an ingest server of each kind the identity benchmarks
// compare, with mqttload's configuration for it: dev is the plain-TCP
// anonymous baseline; token authenticates a registry token over plain
// TCP, with the policy on every publish; tls a client certificate over
// TLS, with the policy.
func benchIdentity(b *testing.B, kind string) (*Server, mqttload.Config) {
	b.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if kind == "dev" {
		r := newRig(b, Options{Logger: quiet})
		return r.srv, mqttload.Config{Addr: r.addr}
	}
	r := newIDRig(b, Options{TokenAuth: true, Logger: quiet})
	r.policy(b, "bench", benchPolicy)
	cfg := mqttload.Config{Topic: "bench/{client}/telemetry"}
	switch kind {
	case "token":
		_, secret, err := r.reg.CreateToken(r.ctx(b), registry.TokenOptions{Principal: "bench", Policies: []string{"bench"}})
		if err != nil {
			b.Fatal(err)
		}
		cfg.Addr, cfg.Username, cfg.Password = r.addr, "bench", secret
	case "tls", "handshake-x25519", "handshake-mlkem":
		_, cert := r.device(b, "bench", registry.CreateOptions{Policies: []string{"bench"}})
		cfg.Addr, cfg.TLS = r.tls, r.clientTLS(&cert)
		if kind != "handshake-mlkem" {
			// What devices' TLS stacks offer; Go's default adds the
			// post-quantum X25519MLKEM768, which costs both sides more.
			cfg.TLS.CurvePreferences = []tls.CurveID{tls.X25519}
		}
	}
	return r.srv, cfg
}

// BenchmarkPublishIdentity is BenchmarkPublish's QoS 1 run on each kind
// of connection (benchIdentity) in one run: the cost of TLS and of the
// per-publish policy decision against the anonymous plain-TCP baseline.
func BenchmarkPublishIdentity(b *testing.B) {
	for _, kind := range []string{"dev", "token", "tls"} {
		b.Run(kind, func(b *testing.B) {
			srv, cfg := benchIdentity(b, kind)
			cfg.Conns, cfg.QoS, cfg.Count = min(100, b.N), 1, int64(b.N)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			res, err := mqttload.Run(context.Background(), cfg)
			if err != nil {
				b.Fatal(err)
			}
			if res.Errors != 0 {
				b.Fatal(res.ErrorSamples)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "acks/s")
			if denied := counterValue(srv.metrics.refused.WithLabelValues("publish_denied")); denied != 0 {
				b.Fatalf("%v publishes denied", denied)
			}
		})
	}
}

// BenchmarkConnectIdentity measures connects, each a new connection
// from 4 goroutines through CONNACK then closed: plain TCP anonymous
// (dev), a token over TCP (lookup and policy compiled), and a client
// certificate over TLS (handshake with X25519, certificate lookup,
// thing, policy). The clients run in the same process, on the same 2
// cores: their half of each handshake is counted too.
func BenchmarkConnectIdentity(b *testing.B) {
	benchConnects(b, []string{"dev", "token", "tls"}, true)
}

// BenchmarkTLSHandshake measures TLS handshakes with a client
// certificate on the MQTT over TLS listener (no CONNECT), from 4
// goroutines in the same process: with X25519 (what devices offer) and
// with Go's default key exchange (X25519MLKEM768).
func BenchmarkTLSHandshake(b *testing.B) {
	benchConnects(b, []string{"handshake-x25519", "handshake-mlkem"}, false)
}

// benchConnects opens b.N connections of each kind, through CONNACK
// when mqtt is set, else through the TLS handshake.
func benchConnects(b *testing.B, kinds []string, mqtt bool) {
	for _, kind := range kinds {
		b.Run(kind, func(b *testing.B) {
			_, cfg := benchIdentity(b, kind)
			var n atomic.Int64
			b.SetParallelism(2) // 2 cores: 4 goroutines
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c, err := net.DialTimeout("tcp", cfg.Addr, 30*time.Second)
					if err != nil {
						b.Error(err)
						return
					}
					if cfg.TLS != nil {
						tc := tls.Client(c, cfg.TLS)
						if err := tc.Handshake(); err != nil {
							b.Error(err)
							return
						}
						c = tc
					}
					if !mqtt {
						c.Close()
						continue
					}
					id := fmt.Sprintf("bench-%d", n.Add(1))
					c.Write(rawConnectPacket(id, cfg.Username, cfg.Password))
					var ack [4]byte
					c.SetReadDeadline(time.Now().Add(30 * time.Second))
					if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 0x20 || ack[3] != 0 {
						b.Errorf("connect %s: %v %x", id, err, ack)
					}
					c.Close()
				}
			})
			unit := "connects/s"
			if !mqtt {
				unit = "handshakes/s"
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), unit)
		})
	}
}

// rawConnectPacket is an MQTT 3.1.1 CONNECT of id, with user and pass
// when user is not empty.
func rawConnectPacket(id, user, pass string) []byte {
	body := connectBody(id, false, "", nil, user, pass)
	return append(appendVarint([]byte{0x10}, len(body)), body...)
}

// BenchmarkIdleConnections measures what idle connections hold in the
// server: each op opens 1,000 connections over TCP that publish one QoS 1
// message, get its PUBACK and stay quiet until their PUBACK writers have
// exited; after two GCs (a GC shrinks goroutine stacks and frees dead
// ones) it reports the Go heap in use, the goroutine stacks and the
// goroutines grown per connection, then closes them. The clients are
// in the same process: a socket each (a few hundred bytes of heap), no
// goroutine.
func BenchmarkIdleConnections(b *testing.B) {
	const n = 1000
	r := newRig(b, Options{writerIdle: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	var heap, stack, goroutines float64
	for i := 0; b.Loop(); i++ {
		before := idleMemory()
		conns := make([]net.Conn, n)
		for j := range conns {
			c, err := net.DialTimeout("tcp", r.addr, 30*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			conns[j] = c
			c.Write(rawConnectPacket(fmt.Sprintf("idle-%d-%d", i, j), "", ""))
			c.Write(idleconns.Publish("idle/t", 1, []byte(`{"v":1}`)))
			var acks [8]byte // CONNACK, PUBACK
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.ReadFull(c, acks[:]); err != nil || acks[0] != 0x20 || acks[3] != 0 || acks[4] != 0x40 {
				b.Fatalf("connect and publish: %v %x", err, acks)
			}
		}
		waitBench(b, "the writers to exit", func() bool { return writers() == 0 })
		after := idleMemory()
		heap += float64(after.HeapInuse) - float64(before.HeapInuse)
		stack += float64(after.StackInuse) - float64(before.StackInuse)
		goroutines += float64(after.goroutines - before.goroutines)
		for _, c := range conns {
			c.Close()
		}
		waitBench(b, "the connections to end", func() bool { return r.srv.open.Load() == 0 && writers() == 0 })
	}
	per := float64(b.N * n)
	b.ReportMetric(heap/per, "heap-B/conn")
	b.ReportMetric(stack/per, "stack-B/conn")
	b.ReportMetric(goroutines/per, "goroutines/conn")
}

// waitBench polls cond until it holds, failing after a minute.
func waitBench(b *testing.B, what string, cond func() bool) {
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
	}
}

type memory struct {
	runtime.MemStats
	goroutines int
}

// idleMemory reads the process's memory after two GCs.
func idleMemory() memory {
	runtime.GC()
	runtime.GC()
	var m memory
	runtime.ReadMemStats(&m.MemStats)
	m.goroutines = runtime.NumGoroutine()
	return m
}
