// Command idleconns measures the memory an MQTT broker spends per idle
// connection or per offline persistent session (benchmarks/idleconns).
// With --bin it starts `iotpipe ingest --dev` afresh for each count on
// free ports and a temporary data dir; with --addr and --pid it measures a
// broker you started (Mosquitto, mochi, another iotpipe).
//
//	go build -o /tmp/iotpipe ./cmd/iotpipe
//	go run ./benchmarks/cmd/idleconns --bin /tmp/iotpipe --conns 1000,10000
//	go run ./benchmarks/cmd/idleconns --bin /tmp/iotpipe --mode offline --conns 10000
//	go run ./benchmarks/cmd/idleconns --bin /tmp/iotpipe --conns 10000 --profile /tmp/prof
//	mosquitto -p 1884 & go run ./benchmarks/cmd/idleconns --addr 127.0.0.1:1884 --pid $! --conns 1000
//
// Opening 10,000 connections needs that many descriptors on both sides:
// raise `ulimit -n` first.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/iotpipe/iotpipe/benchmarks/idleconns"
	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/internal/freeport"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("idleconns", flag.ContinueOnError)
	bin := fs.String("bin", "", "iotpipe binary to start (`iotpipe ingest --dev`) for each count")
	extra := fs.String("args", "", "extra flags for the started iotpipe, space-separated")
	addr := fs.String("addr", "", "MQTT address of a running broker (with --pid), instead of --bin")
	pid := fs.Int("pid", 0, "process id of the broker at --addr")
	metrics := fs.String("metrics", "", "Prometheus URL of the broker at --addr (heap and goroutines), optional")
	metricsToken := fs.String("metrics-token", os.Getenv("IOTPIPE_TOKEN"), "API token --metrics is read with (iotpipe's /metrics needs one)")
	counts := fs.String("conns", "1000,10000", "connection counts, comma-separated")
	mode := fs.String("mode", "idle", "idle: connected clients that published one QoS 1 message; offline: persistent sessions with one subscription, disconnected")
	settle := fs.Duration("settle", 10*time.Second, "wait before each memory reading (an iotpipe connection's PUBACK writer ends after 5s without work)")
	restart := fs.Bool("restart", false, "offline mode with --bin: also restart iotpipe on the same data dir and read its memory again")
	profile := fs.String("profile", "", "with --bin: directory where the heap profile (heap-N.pb.gz) and goroutine dump (goroutine-N.txt) of the started iotpipe are saved while its N connections are open")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*bin == "") == (*addr == "") {
		return fmt.Errorf("give --bin, or --addr with --pid")
	}
	if *profile != "" {
		if *bin == "" {
			return fmt.Errorf("--profile needs --bin")
		}
		if err := os.MkdirAll(*profile, 0o755); err != nil {
			return fmt.Errorf("--profile: %w", err)
		}
		*extra += " --pprof"
	}
	fmt.Printf("| mode | conns | RSS before | RSS after | RSS per conn | heap per conn | stacks per conn | goroutines per conn | connects/s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			return fmt.Errorf("--conns: %q is not a count", s)
		}
		cfg := idleconns.Config{Addr: *addr, PID: *pid, MetricsURL: *metrics, MetricsToken: *metricsToken, Conns: n, Mode: idleconns.Mode(*mode), Settle: *settle}
		var child *iotpipe
		if *bin != "" {
			if child, err = startIotpipe(ctx, *bin, strings.Fields(*extra), ""); err != nil {
				return err
			}
			cfg.Addr, cfg.PID, cfg.MetricsURL, cfg.MetricsToken = child.mqtt, child.cmd.Process.Pid, child.metrics, child.token
		}
		res, fleet, err := idleconns.Measure(ctx, cfg)
		if err != nil {
			child.stop()
			return err
		}
		fmt.Printf("| %s | %d | %s | %s | %.1f KB | %.1f KB | %.1f KB | %.2f | %.0f |\n", res.Mode, n, mb(res.Before.RSS), mb(res.After.RSS),
			res.RSSPerConn()/1024, res.HeapPerConn()/1024, res.StackPerConn()/1024, res.GoroutinesPerConn(), res.ConnectRate())
		if *profile != "" {
			// The heap profile runs a GC first: read the memory again
			// after it (goroutine stacks shrink at a GC, garbage goes).
			after, err := child.saveProfiles(ctx, *profile, n, *settle)
			if err != nil {
				fleet.Close()
				child.stop()
				return err
			}
			fmt.Printf("| %s, after a GC | %d | %s | %s | %.1f KB | %.1f KB | %.1f KB | | |\n", res.Mode, n, mb(res.Before.RSS), mb(after.RSS),
				float64(after.RSS-res.Before.RSS)/float64(n)/1024, float64(after.HeapInuse-res.Before.HeapInuse)/float64(n)/1024,
				float64(after.StackInuse-res.Before.StackInuse)/float64(n)/1024)
		}
		if fleet != nil {
			fleet.Close()
		}
		if child != nil && *restart && cfg.Mode == idleconns.Offline {
			dir := child.dir
			child.own = false
			child.stop()
			if child, err = startIotpipe(ctx, *bin, strings.Fields(*extra), dir); err != nil {
				os.RemoveAll(dir)
				return err
			}
			child.own = true
			time.Sleep(*settle)
			after, err := idleconns.Read(ctx, child.cmd.Process.Pid, child.metrics, child.token)
			if err != nil {
				child.stop()
				return err
			}
			fmt.Printf("| %s, after a restart | %d | %s | %s | %.1f KB | %.1f KB | | | |\n", res.Mode, n, mb(res.Before.RSS), mb(after.RSS),
				float64(after.RSS-res.Before.RSS)/float64(n)/1024, float64(after.HeapInuse-res.Before.HeapInuse)/float64(n)/1024)
		}
		child.stop()
	}
	return nil
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }

type iotpipe struct {
	cmd           *exec.Cmd
	dir           string
	own           bool // dir is ours to remove
	mqtt, metrics string
	token         string // its admin API token (--bootstrap-token)
}

// startIotpipe starts `iotpipe ingest --dev` on free ports with its data
// in dir (a new temporary one when empty) and waits until it is ready.
func startIotpipe(ctx context.Context, bin string, extra []string, dir string) (*iotpipe, error) {
	p := &iotpipe{dir: dir}
	if dir == "" {
		d, err := os.MkdirTemp("", "idleconns-")
		if err != nil {
			return nil, err
		}
		p.dir, p.own = d, true
	}
	mqttPort, httpPort, kafkaPort := freePort(), freePort(), freePort()
	p.mqtt = fmt.Sprintf("127.0.0.1:%d", mqttPort)
	httpAddr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	p.metrics = "http://" + httpAddr + "/metrics"
	tok, err := registry.NewTokenSecret()
	if err != nil {
		return nil, err
	}
	p.token = tok
	args := append([]string{"ingest", "--dev", "--data-dir", p.dir, "--mqtt-addr", p.mqtt, "--http-addr", httpAddr, "--bootstrap-token", tok,
		"--kafka-port", strconv.Itoa(kafkaPort), "--log-level", "warn"}, extra...)
	p.cmd = exec.CommandContext(ctx, bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = os.Stderr, os.Stderr
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.stop()
			return nil, fmt.Errorf("%s did not become ready on %s", bin, httpAddr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// saveProfiles writes the process's heap profile (after a GC, so it
// counts what is live now) and goroutine dump to
// dir/heap-<n>.pb.gz and dir/goroutine-<n>.txt (it runs with --pprof),
// and reads its memory settle after that GC.
func (p *iotpipe) saveProfiles(ctx context.Context, dir string, n int, settle time.Duration) (idleconns.Sample, error) {
	base := strings.TrimSuffix(p.metrics, "/metrics") + "/debug/pprof/"
	for _, f := range []struct{ path, file string }{
		{"heap?gc=1", fmt.Sprintf("heap-%d.pb.gz", n)},
		{"goroutine?debug=1", fmt.Sprintf("goroutine-%d.txt", n)},
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+f.path, nil)
		if err != nil {
			return idleconns.Sample{}, err
		}
		req.Header.Set("Authorization", "Bearer "+p.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return idleconns.Sample{}, fmt.Errorf("profile %s: %w", f.path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s: %s", resp.Status, b)
		}
		if err != nil {
			return idleconns.Sample{}, fmt.Errorf("profile %s: %w", f.path, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.file), b, 0o644); err != nil {
			return idleconns.Sample{}, fmt.Errorf("profile %s: %w", f.path, err)
		}
	}
	time.Sleep(settle)
	return idleconns.Read(ctx, p.cmd.Process.Pid, p.metrics, p.token)
}

// stop ends the process (SIGTERM, then SIGKILL after 30s).
func (p *iotpipe) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
	if p.own {
		os.RemoveAll(p.dir)
	}
}

func freePort() int {
	ps, err := freeport.Ports(1)
	if err != nil {
		panic(err)
	}
	return ps[0]
}
