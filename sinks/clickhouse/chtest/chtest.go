// Package chtest gives tests a ClickHouse server: a fresh embedded one
// (chDB in a child process, temporary data directory, free ports) or,
// when CLICKHOUSE_DSN is set, that server instead.
//
// Use it from TestMain; the server starts on the first Get, so tests
// (and fuzz workers) that need none do not pay for it:
//
//	var srv chtest.Lazy
//
//	func TestMain(m *testing.M) { chtest.Main(m, &srv) }
//
//	func TestX(t *testing.T) { dsn := srv.Get(t).DSN; ... }
package chtest

import (
	"context"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/freeport"
	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
	"github.com/iotpipe/iotpipe/sinks/clickhouse/embedded"
)

// DSNEnv names the variable that points the tests at another server.
const DSNEnv = "CLICKHOUSE_DSN"

// QueryTimeout is the embedded test server's max_execution_time for
// the restricted query user (short, so a test of it is).
const QueryTimeout = 3 * time.Second

// serveEnv marks a re-executed test binary as the chDB child.
const serveEnv = "IOTPIPE_CHTEST_SERVE"

// Server is the server the tests use.
type Server struct {
	// DSN is the clickhouse-go DSN of the server (the embedded server's
	// administrative user).
	DSN string
	// HTTPURL is the HTTP interface's base URL, with the user and
	// password ("" for an external server whose HTTP port is unknown).
	HTTPURL string
	// QueryDSN is the embedded server's restricted query user, whose
	// queries may run QueryTimeout ("" for an external server).
	QueryDSN string
	// Embedded is the supervised child, nil for an external server.
	Embedded *embedded.Server
	dir      string
}

// Lazy is a server started on first use and stopped by Main.
type Lazy struct {
	once sync.Once
	srv  *Server
	err  error
}

// Get returns the server, starting it on the first call. If it cannot
// start (libchdb.so missing, say) the test fails with the reason: tests
// never skip.
func (l *Lazy) Get(t testing.TB) *Server {
	t.Helper()
	l.once.Do(func() { l.srv, l.err = Start(context.Background()) })
	if l.err != nil {
		t.Fatalf("chtest: %v", l.err)
	}
	return l.srv
}

// Main runs the tests of m, stops the server of l if one was started and
// exits. In the re-executed child (the test binary started as the chDB
// host) it serves ClickHouse instead of running tests.
func Main(m *testing.M, l *Lazy) {
	if os.Getenv(serveEnv) == "1" {
		os.Exit(embedded.ServeMain(os.Args[1:]))
	}
	code := m.Run()
	if l.srv != nil {
		l.srv.Stop()
	}
	os.Exit(code)
}

// Start returns the server named by CLICKHOUSE_DSN, or starts an embedded
// one on free ports in a temporary directory, re-executing the running
// test binary as its child.
func Start(ctx context.Context) (*Server, error) {
	if dsn := os.Getenv(DSNEnv); dsn != "" {
		return &Server{DSN: dsn, HTTPURL: os.Getenv("CLICKHOUSE_HTTP_URL")}, nil
	}
	dir, err := os.MkdirTemp("", "chtest-")
	if err != nil {
		return nil, err
	}
	s, err := StartIn(ctx, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.dir = dir
	return s, nil
}

// StartIn starts an embedded server on free ports with its data in dir,
// which it keeps: starting one again in the same dir is a restart.
func StartIn(ctx context.Context, dir string) (*Server, error) {
	lib, err := embedded.LibPath()
	if err != nil {
		return nil, err
	}
	ports, err := freeport.Ports(2)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	level := slog.LevelWarn
	if os.Getenv("CHTEST_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	es, err := embedded.Start(ctx, embedded.Options{
		LibPath:     lib,
		DataDir:     dir,
		TCPPort:     ports[0],
		HTTPPort:    ports[1],
		Binary:      exe,
		Args:        []string{},
		Env:         []string{serveEnv + "=1"},
		MinBackoff:  200 * time.Millisecond,
		MaxBackoff:  time.Second,
		QueryLimits: ddl.QueryLimits{Timeout: QueryTimeout},
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		return nil, err
	}
	c := es.Credentials()
	httpURL := "http://" + url.UserPassword(c.User, c.Password).String() + "@" + c.HTTP
	return &Server{DSN: es.DSN(), HTTPURL: httpURL, QueryDSN: es.QueryDSN(), Embedded: es}, nil
}

// Stop stops an embedded server and removes its data (unless StartIn
// was given the directory).
func (s *Server) Stop() {
	if s.Embedded != nil {
		s.Embedded.Stop()
	}
	if s.dir != "" && !strings.Contains(os.Getenv("CHTEST_KEEP"), "1") {
		os.RemoveAll(s.dir)
	}
}
