package embedded_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

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

// The server's threads run at DefaultNice: its inserts and merges yield
// the CPU to ingest and the processors on a shared machine (threads chDB
// starts after the child lowered its priority inherit it).
func TestServerRunsNiced(t *testing.T) {
	s := srv.Get(t)
	if s.Embedded == nil {
		t.Skip("CLICKHOUSE_DSN names an external server; this test supervises the embedded one")
	}
	httpQuery(t, s.HTTPURL, "SELECT count() FROM numbers(10)")
	dir := fmt.Sprintf("/proc/%d/task", s.Embedded.PID())
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	niced := 0
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			continue // the thread ended
		}
		// Field 19 of stat is the niceness; fields after the command
		// name (in parentheses, which may hold spaces) start at 3.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if f[16] == strconv.Itoa(embedded.DefaultNice) {
			niced++
		}
	}
	// ClickHouse raises a few threads of its own (root may): most run niced.
	if niced < len(tasks)/2 {
		t.Errorf("%d of the server's %d threads run at nice %d", niced, len(tasks), embedded.DefaultNice)
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
		{"bad nice", embedded.Options{DataDir: t.TempDir(), LibPath: os.Args[0], Nice: 20}, "", "nice 20"},
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
		{"--lib=/x", "--path=/y", "--nice=20"},
		{"--lib=/x", "--path=/y", "--nice=-5"},
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

// TestCredentials: the embedded server has no user without a password.
// A connection without credentials (the user default) or with a wrong
// password is refused on both protocols; the administrative user's
// credentials, generated on the first start, kept 0600 in the data
// directory and the same after a restart, work.
func TestCredentials(t *testing.T) {
	if os.Getenv(chtest.DSNEnv) != "" {
		t.Skip("CLICKHOUSE_DSN names an external server")
	}
	dir := t.TempDir()
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "chdb.log"))
			t.Logf("chdb.log:\n%s", b)
		}
	})
	s, err := chtest.StartIn(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	c := s.Embedded.Credentials()
	bare := s.Embedded.HTTPURL()
	refused := []struct {
		name string
		url  string
	}{
		{"no credentials", bare},
		{"user default", "http://default@" + c.HTTP},
		{"wrong password", "http://" + c.User + ":nope@" + c.HTTP},
		{"the query user's password for the admin", "http://" + c.User + ":" + c.QueryPassword + "@" + c.HTTP},
	}
	for _, tt := range refused {
		resp, err := http.Post(tt.url+"/?query="+url.QueryEscape("DROP TABLE IF EXISTS x"), "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("%s: HTTP query accepted: %s", tt.name, b)
		}
	}
	// Refused over HTTP, the server goes on.
	if got := httpQuery(t, s.HTTPURL, "SELECT currentUser()"); got != embedded.AdminUser {
		t.Errorf("the administrative user is %q", got)
	}
	httpQuery(t, s.HTTPURL, "CREATE TABLE kept (n UInt8) ENGINE = MergeTree ORDER BY n")
	httpQuery(t, s.HTTPURL, "INSERT INTO kept VALUES (7)")
	// Refused over the native protocol: chDB ends the process on a
	// refused native login, the supervisor starts it again.
	for _, auth := range []ch.Auth{{Database: "default"}, {Database: "default", Username: c.User, Password: "nope"}} {
		pid := s.Embedded.PID()
		conn, err := ch.Open(&ch.Options{Addr: []string{c.TCP}, Auth: auth, DialTimeout: 5 * time.Second})
		if err == nil {
			err = conn.Ping(context.Background())
			conn.Close()
		}
		if err == nil {
			t.Errorf("native connection as %q accepted", auth.Username)
		}
		// The child may end a moment after the refusal: wait (a while)
		// for the supervisor's new one before asking it anything.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if p := s.Embedded.PID(); p != 0 && p != pid {
				break
			}
		}
		waitUp(t, s)
	}
	if got := httpQuery(t, s.HTTPURL, "SELECT n FROM kept"); got != "7" {
		t.Errorf("after the refused logins the table holds %q, want 7", got)
	}

	for _, f := range []string{embedded.CredentialsFile, "iotpipe-users.xml", "iotpipe-config.xml"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, st.Mode())
		}
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %v (%v), want 0700", st.Mode(), err)
	}
	users, err := os.ReadFile(filepath.Join(dir, "iotpipe-users.xml"))
	if err != nil || strings.Contains(string(users), c.Password) || strings.Contains(string(users), c.QueryPassword) {
		t.Errorf("the users file holds a password in clear (%v)", err)
	}

	s.Stop()
	again, err := chtest.StartIn(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Stop()
	if c2 := again.Embedded.Credentials(); c2.Password != c.Password || c2.QueryPassword != c.QueryPassword {
		t.Error("credentials changed across a restart")
	}
	if got := httpQuery(t, again.HTTPURL, "SELECT currentUser()"); got != embedded.AdminUser {
		t.Errorf("after a restart the administrative user is %q", got)
	}
	read, err := embedded.ReadCredentials(dir)
	if err != nil || read.DSN() != again.Embedded.DSN() {
		t.Errorf("ReadCredentials = %+v, %v; want the server's", read, err)
	}
}

// waitUp waits until the server answers its administrative user again.
func waitUp(t *testing.T, s *chtest.Server) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Post(s.HTTPURL+"/?query=SELECT+1", "text/plain", nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the server did not answer within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A relative data directory (iotpipe run's default is ./data) is taken
// from the working directory of the start, not of the child: the child
// runs in its data directory, and its users file was looked up under
// data/clickhouse/data/clickhouse and not found.
func TestRelativeDataDir(t *testing.T) {
	if os.Getenv(chtest.DSNEnv) != "" {
		t.Skip("CLICKHOUSE_DSN names an external server")
	}
	t.Chdir(t.TempDir())
	s, err := chtest.StartIn(context.Background(), filepath.Join("data", "clickhouse"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if n := httpQuery(t, s.HTTPURL, "SELECT 1"); n != "1" {
		t.Errorf("SELECT 1 = %s", n)
	}
}
