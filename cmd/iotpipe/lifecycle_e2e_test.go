package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/sinks/clickhouse/embedded"
)

// runToExit runs the binary in dir with env added to the environment and
// returns its exit code and output (stdout and stderr) once it exited.
func runToExit(t *testing.T, dir string, env []string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, iotpipeBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee) && ctx.Err() == nil:
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("iotpipe %v: %v\n%s", args, err, out)
	return 0, ""
}

// holdPort listens on a free port until the test ends and returns it.
func holdPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// Every start-up failure ends the process with a non-zero status and its
// real error printed once, with what to do; no panic, no goroutine dump.
// Before, they ended in `panic: pebble: closed` (stores closed while the
// processors' goroutines still ran) or a goroutine dump.
func TestStartupErrorsPrintedOnce(t *testing.T) {
	for _, c := range []struct {
		name string
		// args are added to a `run --dev` on free ports; PORT is replaced
		// by a port the test holds.
		args []string
		// env is added to the child's environment; ROOT is a temp dir.
		env  []string
		code int
		want string // printed exactly once
	}{
		{name: "clickhouse tcp port in use", args: []string{"--clickhouse-tcp-port", "PORT", "--clickhouse-http-port", "FREE"},
			code: 1, want: "ClickHouse port PORT is in use: pass --clickhouse-tcp-port with another port, or stop the other server"},
		{name: "clickhouse http port in use", args: []string{"--clickhouse-tcp-port", "FREE", "--clickhouse-http-port", "PORT"},
			code: 1, want: "ClickHouse port PORT is in use: pass --clickhouse-http-port"},
		{name: "http port in use", args: []string{"--http-addr", "127.0.0.1:PORT"},
			code: 1, want: "HTTP address 127.0.0.1:PORT is in use: pass --http-addr"},
		{name: "mqtt port in use", args: []string{"--mqtt-addr", "127.0.0.1:PORT"},
			code: 1, want: "MQTT address 127.0.0.1:PORT is in use: pass --mqtt-addr"},
		{name: "embedded log port in use", args: []string{"--kafka-port", "PORT"},
			code: 1, want: "use --kafka-port or --data-dir"},
		{name: "bad mqtt address", args: []string{"--mqtt-addr", "127.0.0.1:99999"},
			code: 1, want: "invalid port"},
		{name: "library absent", args: []string{"--clickhouse-tcp-port", "FREE", "--clickhouse-http-port", "FREE"},
			env:  []string{"IOTPIPE_CHDB_LIB=", "HOME=ROOT/home", "XDG_CACHE_HOME=ROOT/cache"},
			code: 1, want: "run `make deps`"},
		{name: "bad log level", args: []string{"--log-level", "loud"},
			code: 2, want: `--log-level (log_level) "loud": want debug, info, warn or error`},
		{name: "bad log format", args: []string{"--log-format", "xml"},
			code: 2, want: `--log-format (log_format) "xml": want text or json`},
		{name: "bad partitions", args: []string{"--partitions", "0"},
			code: 2, want: "--partitions (partitions) 0: want 1 or more"},
		{name: "bad drain timeout", args: []string{"--drain-timeout", "-1s"},
			code: 2, want: "--drain-timeout (drain_timeout) -1s: want a duration above 0"},
		{name: "flag value of the wrong type", args: []string{"--partitions", "many"},
			code: 2, want: `invalid value "many" for flag -partitions`},
		{name: "positional argument", args: []string{"extra", "--dev"},
			code: 2, want: `iotpipe run: unexpected argument "extra": run takes flags only`},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			held := strconv.Itoa(holdPort(t))
			args := []string{"run", "--dev", "--data-dir", filepath.Join(root, "data"), "--rules", filepath.Join(root, "rules"),
				"--mqtt-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--mqtts-addr", "127.0.0.1:0", "--ws-addr", "127.0.0.1:0", "--wss-addr", "127.0.0.1:0",
				"--http-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
				"--kafka-port", strconv.Itoa(freePort(t)), "--partitions", "4", "--clickhouse", "off"}
			for _, a := range c.args {
				a = strings.ReplaceAll(a, "PORT", held)
				if a == "FREE" {
					a = strconv.Itoa(freePort(t))
				}
				args = append(args, a)
			}
			if strings.Contains(strings.Join(c.args, " "), "--clickhouse-tcp-port") {
				args = append(args, "--clickhouse", "") // the embedded server
			}
			var env []string
			for _, e := range c.env {
				env = append(env, strings.ReplaceAll(e, "ROOT", root))
			}
			code, out := runToExit(t, root, env, args...)
			want := strings.ReplaceAll(c.want, "PORT", held)
			if code != c.code {
				t.Errorf("exit status %d, want %d", code, c.code)
			}
			if n := strings.Count(out, want); n != 1 {
				t.Errorf("%q printed %d times, want once", want, n)
			}
			for _, bad := range []string{"panic:", "goroutine ", "pebble: closed"} {
				if strings.Contains(out, bad) {
					t.Errorf("output has %q", bad)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

// The binary run from a directory outside the repository, without
// IOTPIPE_CHDB_LIB, finds the library `make deps` installed in the
// user's cache ($XDG_CACHE_HOME/iotpipe/chdb) and starts the embedded
// ClickHouse. Idle, it then stops on SIGTERM within the drain deadline
// with status 0.
func TestRunOutsideRepoFindsLibraryAndStopsIdle(t *testing.T) {
	lib, err := embedded.LibPath()
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	dst := filepath.Join(cache, "iotpipe", "chdb", embedded.ChDBVersion, "libchdb.so")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(lib, dst); err != nil {
		t.Fatal(err)
	}
	in, ch := clickhouseInstance(t)
	in.dir = t.TempDir()
	in.env = []string{"IOTPIPE_CHDB_LIB=", "XDG_CACHE_HOME=" + cache, "HOME=" + t.TempDir()}
	in.start(append(ch, "--drain-timeout", "30s")...)
	in.waitSQL(t, ch, "SELECT count() FROM telemetry", "0")
	code, took := in.terminate(60 * time.Second)
	if code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0\n%s", code, in.logText())
	}
	t.Logf("idle node with the embedded ClickHouse stopped %s after SIGTERM", took.Round(time.Millisecond))
}

// SIGTERM under QoS 1 load: the node stops accepting first (no PUBACK
// arrives after the accept phase ended), every acknowledged publish is in
// the log, the phases stop in order (accept, ingest, process, sink,
// store) and the process exits 0 within the drain deadline. Before, MQTT
// kept acknowledging after SIGTERM and the node hung about a minute: the
// embedded ClickHouse stopped before the sink flushed.
func TestSigtermUnderLoadDrainsInOrder(t *testing.T) {
	in, ch := clickhouseInstance(t)
	const drain = 30 * time.Second
	in.start(append(ch, "--drain-timeout", drain.String())...)
	load := startAckLoad(t, in, "term", 20)
	deadline := time.Now().Add(60 * time.Second)
	for { // the sink is writing
		if n, _ := strconv.Atoi(in.sql(t, ch, "SELECT count() FROM telemetry")); n > 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no telemetry in ClickHouse under load: %s", in.sql(t, ch, "SELECT count() FROM telemetry"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	code, took := in.terminate(drain + 30*time.Second)
	load.stop()
	logText := in.logText()
	if code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	// The phases stopped in order; no PUBACK arrived after the accept
	// phase ended (1 s allowed for one already on its way).
	stopped := map[string]time.Time{}
	last := -1
	for _, p := range phaseNames {
		at, i := logTime(logText, `msg=stopped phase=`+p+" ")
		if i < 0 {
			t.Errorf("no %q line in the log", "stopped phase="+p)
			continue
		}
		if i < last {
			t.Errorf("phase %s stopped before the one before it", p)
		}
		last = i
		stopped[p] = at
	}
	if acceptEnd, ok := stopped["accept"]; ok {
		if late := load.lastAck().Sub(acceptEnd); late > time.Second {
			t.Errorf("a PUBACK arrived %s after the accept phase ended", late)
		}
	}
	if t.Failed() {
		t.Fatalf("log:\n%s", tail(logText, 80))
	}
	total := load.total()
	in.start() // read the log back
	counts := load.checkLogged(t, in.readEvents())
	logged := 0
	for _, n := range counts {
		logged += n
	}
	t.Logf("SIGTERM under load: exited %s after it; %d publishes acknowledged, %d logged, all acknowledged ones present once",
		took.Round(time.Millisecond), total, logged)
}

// terminate sends SIGTERM and waits up to limit for the child to exit;
// it returns the exit status and how long it took (a child still running
// at the limit fails the test and is killed).
func (in *instance) terminate(limit time.Duration) (int, time.Duration) {
	in.t.Helper()
	start := time.Now()
	in.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- in.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(limit):
		in.cmd.Process.Signal(syscall.SIGKILL)
		<-done
		in.t.Errorf("iotpipe still running %s after SIGTERM; killed\n%s", limit, tail(in.logText(), 60))
	}
	took := time.Since(start)
	code := in.cmd.ProcessState.ExitCode()
	if err != nil && code == 0 {
		code = -1
	}
	in.cmd = nil
	in.logf.Close()
	in.checkLog()
	return code, took
}

// logText is the child's log so far.
func (in *instance) logText() string {
	b, _ := os.ReadFile(filepath.Join(in.dataDir, "iotpipe.log"))
	return string(b)
}

// logTime finds the first log line containing s and returns its time
// and line number (-1 when none has it).
func logTime(log, s string) (time.Time, int) {
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for i := 0; sc.Scan(); i++ {
		line := sc.Text()
		if !strings.Contains(line, s) {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, _ := time.Parse(time.RFC3339Nano, ts)
		return at, i
	}
	return time.Time{}, -1
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// A drain that cannot finish — the embedded ClickHouse frozen (SIGSTOP)
// while the sink holds rows — ends at --drain-timeout: iotpipe names
// what did not finish and exits with status 1 instead of hanging.
func TestDrainTimeoutExceededExitsNonZero(t *testing.T) {
	in, ch := clickhouseInstance(t)
	in.start(append(ch, "--drain-timeout", "3s")...)
	mosquittoPub(t, in, "frozen-1", "dt/frozen-1", `{"t":1}`)
	in.waitSQL(t, ch, "SELECT count() FROM telemetry", "1")
	out, err := exec.Command("pgrep", "-f", "--", "--path="+filepath.Join(in.dataDir, "clickhouse")).Output()
	if err != nil {
		t.Fatalf("find the ClickHouse child: %v", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		pid, _ := strconv.Atoi(f)
		if syscall.Kill(pid, syscall.SIGSTOP) == nil {
			pids = append(pids, pid)
		}
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	for i := 0; i < 5; i++ {
		mosquittoPub(t, in, "frozen-1", "dt/frozen-1", fmt.Sprintf(`{"t":%d}`, i+2))
	}
	time.Sleep(2 * time.Second) // the sink has them and tries to insert
	code, took := in.terminate(60 * time.Second)
	logText := in.logText()
	if code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	for _, s := range []string{"drain did not finish within 3s", "still running in the sink phase", "clickhouse sink"} {
		if strings.Count(logText, s) != 1 {
			t.Errorf("the log says %q %d times, want once", s, strings.Count(logText, s))
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", tail(logText, 40))
	}
	t.Logf("stopped %s after SIGTERM with the drain deadline at 3s", took.Round(time.Millisecond))
}
