package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/internal/freeport"
	"github.com/iotpipe/iotpipe/sinks/clickhouse/embedded"
)

// instance is one iotpipe child process (run or ingest) on free ports,
// in a data directory of its own.
type instance struct {
	name              string
	role              string // "run" or "ingest"
	dir               string
	mqtt, http, kafka int
	chTCP, chHTTP     int
	cmd               *exec.Cmd
	log               *os.File
	exited            chan struct{}
	chUser, chPass    string
	hc                *http.Client
	// token is the instance's admin API token (--bootstrap-token); hc
	// sends it with every request.
	token string
}

// startInstance starts `iotpipe <role> --dev` with the rules given (file
// name -> text) and waits until it is ready (and, for run, until its
// embedded ClickHouse answers and the rules are loaded).
func startInstance(ctx context.Context, cfg *Config, name, role string, rules map[string]string) (*instance, error) {
	dir, err := os.MkdirTemp(cfg.WorkDir, "iotpipe-e2e-"+name+"-")
	if err != nil {
		return nil, err
	}
	tok, err := registry.NewTokenSecret()
	if err != nil {
		return nil, err
	}
	in := &instance{name: name, role: role, dir: dir, exited: make(chan struct{}), token: tok}
	ports, err := freeport.Ports(5)
	if err != nil {
		return nil, err
	}
	in.mqtt, in.http, in.kafka, in.chTCP, in.chHTTP = ports[0], ports[1], ports[2], ports[3], ports[4]
	in.hc = &http.Client{Timeout: 30 * time.Second,
		Transport: bearer{token: tok, host: fmt.Sprintf("127.0.0.1:%d", in.http), base: http.DefaultTransport}}
	rulesDir := filepath.Join(dir, "rules")
	if err := os.MkdirAll(rulesDir, 0o755); err != nil {
		return nil, err
	}
	for file, text := range rules {
		if err := os.WriteFile(filepath.Join(rulesDir, file), []byte(text), 0o644); err != nil {
			return nil, err
		}
	}
	args := []string{role, "--dev", "--data-dir", dir,
		"--mqtt-addr", fmt.Sprintf("127.0.0.1:%d", in.mqtt),
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", in.http),
		"--kafka-port", strconv.Itoa(in.kafka),
		"--partitions", strconv.Itoa(cfg.Partitions),
		"--pprof", "--log-level", "warn", "--bootstrap-token", tok}
	if role == "run" {
		args = append(args, "--rules", rulesDir,
			"--clickhouse-tcp-port", strconv.Itoa(in.chTCP), "--clickhouse-http-port", strconv.Itoa(in.chHTTP))
	}
	in.log, err = os.Create(filepath.Join(dir, "iotpipe.log"))
	if err != nil {
		return nil, err
	}
	in.cmd = exec.Command(cfg.Binary, args...)
	in.cmd.Env = childEnv()
	in.cmd.Stdout, in.cmd.Stderr = in.log, in.log
	in.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := in.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %s: %w", cfg.Binary, role, err)
	}
	go func() { in.cmd.Wait(); close(in.exited) }()
	if err := in.waitReady(ctx, len(rules)); err != nil {
		in.stop()
		return nil, fmt.Errorf("iotpipe %s (%s) did not get ready: %w; its log: %s", role, name, err, in.tail())
	}
	return in, nil
}

// bearer adds an API token to the requests to iotpipe's API (host), and
// to no other: ClickHouse's HTTP interface refuses a request with a
// bearer token it does not know ("'Bearer' HTTP Authorization scheme is
// not supported"), and a token must not leave for another server.
type bearer struct {
	token string
	host  string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != b.host {
		return b.base.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// childEnv is this process's environment without IOTPIPE_ settings
// (which would change the child's configuration), except where chDB is.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "IOTPIPE_") && !strings.HasPrefix(kv, "IOTPIPE_CHDB_LIB=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (in *instance) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", in.http, path)
}

func (in *instance) mqttAddr() string { return fmt.Sprintf("127.0.0.1:%d", in.mqtt) }

func (in *instance) waitReady(ctx context.Context, rules int) error {
	deadline := time.Now().Add(3 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-in.exited:
			return errors.New("it exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		resp, err := in.hc.Get(in.url("/readyz"))
		if err != nil {
			last = err
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			last = fmt.Errorf("/readyz: %s", resp.Status)
			continue
		}
		if in.role != "run" {
			return nil
		}
		if in.chUser == "" {
			c, err := embedded.ReadCredentials(filepath.Join(in.dir, "clickhouse"))
			if err != nil {
				last = err
				continue
			}
			in.chUser, in.chPass = c.User, c.Password
		}
		if _, err := in.query(ctx, "SELECT count() FROM telemetry"); err != nil {
			last = err
			continue
		}
		m, err := in.scrape(ctx)
		if err != nil {
			last = err
			continue
		}
		if got := m.value("iotpipe_rules_loaded"); int(got) < rules {
			last = fmt.Errorf("%v of %d rules loaded", got, rules)
			continue
		}
		return nil
	}
	return last
}

// query runs a query on the embedded ClickHouse over HTTP and returns
// its TSV output.
func (in *instance) query(ctx context.Context, q string) (string, error) {
	u := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", in.chHTTP), Path: "/",
		User: url.UserPassword(in.chUser, in.chPass)}
	req, err := http.NewRequestWithContext(ctx, "POST", u.String(), strings.NewReader(q))
	if err != nil {
		return "", err
	}
	resp, err := in.hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("clickhouse: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("clickhouse %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return string(b), nil
}

// metrics are the samples of one /metrics scrape, by name and labels.
type metrics map[string]*dto.MetricFamily

func (in *instance) scrape(ctx context.Context) (metrics, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", in.url("/metrics"), nil)
	if err != nil {
		return nil, err
	}
	resp, err := in.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	return metrics(fams), nil
}

// value sums the counter or gauge name over the series whose labels
// include every label=value pair given.
func (m metrics) value(name string, labels ...string) float64 {
	f := m[name]
	if f == nil {
		return 0
	}
	sum := 0.0
outer:
	for _, s := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range s.GetLabel() {
				if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue outer
			}
		}
		switch {
		case s.Counter != nil:
			sum += s.GetCounter().GetValue()
		case s.Gauge != nil:
			sum += s.GetGauge().GetValue()
		case s.Untyped != nil:
			sum += s.GetUntyped().GetValue()
		}
	}
	return sum
}

// pids returns the iotpipe process and, for run, its ClickHouse child.
func (in *instance) pids() (main, chdb int) {
	main = in.cmd.Process.Pid
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil && st.ppid == main {
			chdb = pid
		}
	}
	return main, chdb
}

// stop ends the child with SIGTERM (its drain), then SIGKILL after a
// minute, and removes its data directory unless keep.
func (in *instance) stop() {
	if in.cmd == nil || in.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(in.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-in.exited:
	case <-time.After(time.Minute):
		_ = syscall.Kill(-in.cmd.Process.Pid, syscall.SIGKILL)
		<-in.exited
	}
	in.log.Close()
}

// tail is the end of the child's log.
func (in *instance) tail() string {
	b, _ := os.ReadFile(filepath.Join(in.dir, "iotpipe.log"))
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}
