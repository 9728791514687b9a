package embedded

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
)

// Options configures the embedded server. The zero value of every field
// but DataDir has a working default.
type Options struct {
	// LibPath is libchdb.so. Default: LibPath() (IOTPIPE_CHDB_LIB or the
	// cache that `make deps` fills).
	LibPath string
	// DataDir is the ClickHouse data directory. Required.
	DataDir string
	// ListenHost is where both listeners bind. Default 127.0.0.1.
	ListenHost string
	// TCPPort is the native protocol port. Default 9000.
	TCPPort int
	// HTTPPort is the HTTP port. Default 8123.
	HTTPPort int
	// Binary is the executable started as the child. Default
	// os.Executable().
	Binary string
	// Args are the arguments placed before the server flags; the child
	// runs `Binary Args... --lib=... --path=...`. Default
	// ["clickhouse", "serve"], the hidden role of the iotpipe binary.
	Args []string
	// Env is added to the child's environment, which holds only the
	// variables the server needs of this process's (see childEnv): no
	// secret of iotpipe's reaches it.
	Env []string
	// Output receives the child's stdout and stderr. Default: the file
	// chdb.log in DataDir (appended).
	Output io.Writer
	// StartTimeout bounds the wait for /ping after each start. Default 60s.
	StartTimeout time.Duration
	// MinBackoff and MaxBackoff bound the delay before restarting a child
	// that exited on its own. Defaults 500ms and 30s; the delay doubles on
	// each crash and resets once a child stayed up for a minute.
	MinBackoff, MaxBackoff time.Duration
	// QueryLimits shape the restricted user /api/sql runs as (its
	// settings profile). Zero fields have the defaults of
	// schemas/clickhouse.QueryLimits.
	QueryLimits ddl.QueryLimits
	// Logger logs starts, crashes and restarts. Default slog.Default().
	Logger *slog.Logger
	// Nice is the niceness the server runs at (Linux; 0 to 19), so that
	// its inserts and merges yield the CPU to ingest and the processors
	// on a shared machine. Default DefaultNice; -1 for the parent's.
	Nice int
}

// DefaultNice is Options.Nice's default.
const DefaultNice = 10

func (o *Options) setDefaults() error {
	if o.DataDir == "" {
		return errors.New("embedded clickhouse: DataDir is required")
	}
	if o.LibPath == "" {
		p, err := LibPath()
		if err != nil {
			return err
		}
		o.LibPath = p
	} else if _, err := os.Stat(o.LibPath); err != nil {
		return fmt.Errorf("embedded clickhouse: %w; run `make deps` (or sinks/clickhouse/install-chdb.sh) to fetch libchdb.so", err)
	}
	if o.ListenHost == "" {
		o.ListenHost = "127.0.0.1"
	}
	if o.TCPPort == 0 {
		o.TCPPort = 9000
	}
	if o.HTTPPort == 0 {
		o.HTTPPort = 8123
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("embedded clickhouse: find own executable: %w", err)
		}
		o.Binary = exe
	}
	if o.Args == nil {
		o.Args = []string{"clickhouse", "serve"}
	}
	switch {
	case o.Nice == 0:
		o.Nice = DefaultNice
	case o.Nice == -1:
		o.Nice = 0
	case o.Nice < 0 || o.Nice > 19:
		return fmt.Errorf("embedded clickhouse: nice %d: want -1 or 0 to 19", o.Nice)
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// Server supervises the child process that hosts chDB: it restarts the
// child when it exits on its own, and stops it on Stop or when the
// context given to Start is done.
type Server struct {
	opts   Options
	logger *slog.Logger
	closer io.Closer // the log file, when Output defaulted to it
	creds  Credentials
	config string // the child's --config-file

	mu       sync.Mutex
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	exited   chan struct{} // closed when the current child exited
	stopping bool

	stop chan struct{}
	done chan struct{}
}

// Start starts the child, waits until it answers /ping and returns a
// Server that keeps it running. It fails with the child's last output
// when the first start does not come up within StartTimeout.
//
// The server has no user without a password: on the first start it
// generates credentials (see Credentials), kept in DataDir (mode 0600,
// the directory 0700), and every start writes the users the child loads
// from them.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	// The child runs in its data directory: every path it is given is
	// absolute (a relative one would be read from there).
	abs, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("embedded clickhouse: data directory: %w", err)
	}
	opts.DataDir = abs
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedded clickhouse: create data directory: %w", err)
	}
	if err := os.Chmod(opts.DataDir, 0o700); err != nil { // made by an older version
		return nil, fmt.Errorf("embedded clickhouse: data directory: %w", err)
	}
	s := &Server{opts: opts, logger: opts.Logger.With("component", "clickhouse-embedded"), stop: make(chan struct{}), done: make(chan struct{})}
	creds, created, err := loadCredentials(opts.DataDir, s.TCPAddr(), hostPort(opts.ListenHost, opts.HTTPPort))
	if err != nil {
		return nil, fmt.Errorf("embedded clickhouse: %w", err)
	}
	if s.config, err = writeAccess(opts.DataDir, creds, opts.QueryLimits); err != nil {
		return nil, err
	}
	s.creds = creds
	if created {
		s.logger.Info("embedded clickhouse credentials generated", "file", s.CredentialsPath())
	} else {
		s.logger.Info("embedded clickhouse credentials", "file", s.CredentialsPath())
	}
	if opts.Output == nil {
		f, err := os.OpenFile(filepath.Join(opts.DataDir, "chdb.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, fmt.Errorf("embedded clickhouse: open log: %w", err)
		}
		s.opts.Output, s.closer = f, f
	}
	// A ClickHouse of an iotpipe that died may still be shutting down
	// and hold the data directory: wait for it, for a while.
	deadline := time.Now().Add(lockWait)
	for {
		tail := &tailBuffer{max: 4096}
		if err := s.spawn(tail); err != nil {
			s.closeLog()
			return nil, err
		}
		err := s.waitReady(ctx)
		if err == nil {
			break
		}
		s.kill()
		if strings.Contains(tail.String(), "Another server instance in same directory is already running") && time.Now().Before(deadline) && ctx.Err() == nil {
			s.logger.Warn("a previous embedded ClickHouse still holds the data directory (its iotpipe died?); waiting for it to exit", "dir", opts.DataDir)
			time.Sleep(500 * time.Millisecond)
			continue
		}
		s.closeLog()
		return nil, fmt.Errorf("embedded clickhouse did not start on %s: %w; child output: %q", s.HTTPURL(), err, tail.String())
	}
	s.logger.Info("embedded clickhouse ready", "tcp", s.TCPAddr(), "http", s.HTTPURL(), "pid", s.PID())
	go s.supervise(ctx)
	return s, nil
}

// lockWait is how long Start waits for a previous server that still
// holds the data directory to exit.
const lockWait = 30 * time.Second

// TCPAddr is the native protocol address, host:port.
func (s *Server) TCPAddr() string {
	return net.JoinHostPort(s.opts.ListenHost, strconv.Itoa(s.opts.TCPPort))
}

// HTTPURL is the HTTP interface's base URL.
func (s *Server) HTTPURL() string {
	return "http://" + net.JoinHostPort(s.opts.ListenHost, strconv.Itoa(s.opts.HTTPPort))
}

// DSN is the administrative user's native DSN for the default database.
func (s *Server) DSN() string { return s.creds.DSN() }

// HTTPDSN is the administrative user's DSN over the HTTP interface.
func (s *Server) HTTPDSN() string { return s.creds.HTTPDSN() }

// QueryDSN is the restricted user's native DSN (reads of the default
// database within the limits of Options.QueryLimits; see
// schemas/clickhouse.QueryGrants).
func (s *Server) QueryDSN() string { return s.creds.QueryDSN() }

// Credentials are the server's users.
func (s *Server) Credentials() Credentials { return s.creds }

// CredentialsPath is the file that keeps them.
func (s *Server) CredentialsPath() string { return filepath.Join(s.opts.DataDir, CredentialsFile) }

// PID is the process id of the current child, or 0 between restarts.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Stop closes the child's stdin, which ends its serving statement, and
// waits for it to exit (killing it after 30s).
func (s *Server) Stop() error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		<-s.done
		return nil
	}
	s.stopping = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	s.closeLog()
	return nil
}

func (s *Server) closeLog() {
	if s.closer != nil {
		s.closer.Close()
	}
}

func (s *Server) spawn(tail io.Writer) error {
	args := append(append([]string(nil), s.opts.Args...), ServeArgs{
		Lib: s.opts.LibPath, Path: s.opts.DataDir, ListenHost: s.opts.ListenHost,
		TCPPort: s.opts.TCPPort, HTTPPort: s.opts.HTTPPort, Config: s.config, Nice: s.opts.Nice,
	}.Args()...)
	cmd := exec.Command(s.opts.Binary, args...)
	out := s.opts.Output
	if tail != nil {
		out = io.MultiWriter(out, tail)
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = childEnv(os.Environ(), s.opts.Env)
	cmd.SysProcAttr = childAttrs()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("embedded clickhouse: stdin pipe: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("embedded clickhouse: start %s: %w", s.opts.Binary, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.stdin, s.exited = cmd, stdin, exited
	s.mu.Unlock()
	return nil
}

// waitReady polls /ping until it answers, the child exits or the start
// timeout passes.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.StartTimeout)
	defer cancel()
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	// No keep-alive: an idle connection would hold the server's shutdown
	// for shutdown_wait_unfinished (5s).
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		if Ping(ctx, client, s.HTTPURL()) == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("child exited during start")
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Ping asks the HTTP interface at baseURL for /ping.
func Ping(ctx context.Context, client *http.Client, baseURL string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/ping", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping: %s", resp.Status)
	}
	return nil
}

// supervise restarts the child whenever it exits until Stop or ctx.
func (s *Server) supervise(ctx context.Context) {
	defer close(s.done)
	backoff := s.opts.MinBackoff
	started := time.Now()
	for {
		s.mu.Lock()
		exited := s.exited
		s.mu.Unlock()
		select {
		case <-s.stop:
			s.shutdown()
			return
		case <-ctx.Done():
			s.shutdown()
			return
		case <-exited:
		}
		if time.Since(started) > time.Minute {
			backoff = s.opts.MinBackoff
		}
		s.logger.Warn("embedded clickhouse exited; restarting", "state", s.state(), "backoff", backoff)
		select {
		case <-s.stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, s.opts.MaxBackoff)
		started = time.Now()
		if err := s.spawn(nil); err != nil {
			s.logger.Error("embedded clickhouse restart failed", "err", err)
			continue
		}
		if err := s.waitReady(ctx); err != nil {
			s.logger.Error("embedded clickhouse not ready after restart", "err", err)
			s.kill()
			continue
		}
		s.logger.Info("embedded clickhouse restarted", "pid", s.PID())
	}
}

func (s *Server) state() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.ProcessState == nil {
		return "unknown"
	}
	return s.cmd.ProcessState.String()
}

// shutdown closes stdin and waits for the child, killing it after 30s.
func (s *Server) shutdown() {
	s.mu.Lock()
	stdin, exited, cmd := s.stdin, s.exited, s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	stdin.Close()
	select {
	case <-exited:
		s.logger.Info("embedded clickhouse stopped")
	case <-time.After(30 * time.Second):
		s.logger.Warn("embedded clickhouse did not stop in 30s; killing it")
		cmd.Process.Kill()
		<-exited
	}
}

// kill ends the current child at once and waits for it.
func (s *Server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		cmd.Process.Kill()
		<-exited
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// childEnv is the environment of the child: the variables of env the
// server uses (PATH, HOME, TMPDIR, TZ, the locale, GOCOVERDIR for
// coverage runs), then extra.
func childEnv(env, extra []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "PATH", name == "HOME", name == "TMPDIR", name == "TZ", name == "LANG", name == "GOCOVERDIR",
			strings.HasPrefix(name, "LC_"):
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}
