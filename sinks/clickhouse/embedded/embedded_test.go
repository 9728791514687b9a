package embedded_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/sinks/clickhouse/chtest"
	"github.com/iotpipe/iotpipe/sinks/clickhouse/embedded"
)

var srv chtest.Lazy

func TestMain(m *testing.M) { chtest.Main(m, &srv) }

func httpQuery(t *testing.T, base, q string) string {
	t.Helper()
	resp, err := http.Post(base+"/?query="+url.QueryEscape(q), "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s: %s", q, resp.Status, b)
	}
	return strings.TrimSpace(string(b))
}

func TestServerRestartsAfterKillAndKeepsData(t *testing.T) {
	s := srv.Get(t)
	if s.Embedded == nil {
		t.Skip("CLICKHOUSE_DSN names an external server; this test supervises the embedded one")
	}
	if v := httpQuery(t, s.HTTPURL, "SELECT version()"); !strings.HasPrefix(v, "26.") {
		t.Errorf("version %q, want 26.x", v)
	}
	httpQuery(t, s.HTTPURL, "CREATE TABLE IF NOT EXISTS persist (n UInt32) ENGINE = MergeTree ORDER BY n")
	httpQuery(t, s.HTTPURL, "INSERT INTO persist SELECT number FROM numbers(1000)")

	pid := s.Embedded.PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := s.Embedded.PID()
		if p != 0 && p != pid && embedded.Ping(context.Background(), http.DefaultClient, s.HTTPURL) == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server not restarted within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := httpQuery(t, s.HTTPURL, "SELECT count() FROM persist"); n != "1000" {
		t.Errorf("after restart count() = %s, want 1000", n)
	}
}

func TestStopEndsTheChild(t *testing.T) {
	if os.Getenv(chtest.DSNEnv) != "" {
		t.Skip("CLICKHOUSE_DSN names an external server")
	}
	// A short-lived server of our own, so a shared one stays up.
	other, err := chtest.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	pid := other.Embedded.PID()
	start := time.Now()
	other.Stop()
	t.Logf("Stop took %v", time.Since(start))
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("child %d still running after Stop", pid)
	}
	if embedded.Ping(context.Background(), &http.Client{Timeout: time.Second}, other.HTTPURL) == nil {
		t.Error("server still answers after Stop")
	}
}

func TestStartErrors(t *testing.T) {
	tests := []struct {
		name string
		opts embedded.Options
		env  string
		want string
	}{
		{"no data dir", embedded.Options{LibPath: "/nonexistent"}, "", "DataDir is required"},
		{"lib missing", embedded.Options{DataDir: t.TempDir(), LibPath: "/nonexistent/libchdb.so"}, "", "make deps"},
		{"env lib missing", embedded.Options{DataDir: t.TempDir()}, "/nonexistent/libchdb.so", "make deps"},
		{"child fails", embedded.Options{DataDir: t.TempDir(), LibPath: os.Args[0], Binary: "/bin/false", StartTimeout: 5 * time.Second}, "", "did not start"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv(embedded.LibEnv, tt.env)
			}
			s, err := embedded.Start(context.Background(), tt.opts)
			if err == nil {
				s.Stop()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestServeMainBadArgs(t *testing.T) {
	tests := [][]string{
		{},
		{"--lib=/x"},
		{"--lib=/x", "--path=/y", "--tcp-port=0"},
		{"--lib=/x", "--path=/y", "--http-port=70000"},
		{"--bogus"},
	}
	for _, args := range tests {
		if code := embedded.ServeMain(args); code != 2 {
			t.Errorf("ServeMain(%q) = %d, want 2", args, code)
		}
	}
}

func TestServeMainLoadFailure(t *testing.T) {
	code := embedded.ServeMain([]string{"--lib=/nonexistent/libchdb.so", "--path=" + t.TempDir()})
	if code != 1 {
		t.Errorf("ServeMain with a missing library = %d, want 1", code)
	}
}
