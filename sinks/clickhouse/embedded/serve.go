package embedded

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

	"github.com/ebitengine/purego"
)

// ServeArgs are the arguments of the child role (`iotpipe clickhouse
// serve`). Args renders them, ServeMain parses them.
type ServeArgs struct {
	// Lib is the path of libchdb.so.
	Lib string
	// Path is the ClickHouse data directory.
	Path string
	// ListenHost is the address both listeners bind to.
	ListenHost string
	// TCPPort is the native protocol port.
	TCPPort int
	// HTTPPort is the HTTP interface port.
	HTTPPort int
	// Config is the configuration file the server loads (its users);
	// "" for none.
	Config string
	// Nice is the niceness the server runs at (0: the parent's).
	Nice int
}

// Args renders a as command-line flags for ServeMain.
func (a ServeArgs) Args() []string {
	return []string{
		"--lib=" + a.Lib,
		"--path=" + a.Path,
		"--listen-host=" + a.ListenHost,
		"--tcp-port=" + strconv.Itoa(a.TCPPort),
		"--http-port=" + strconv.Itoa(a.HTTPPort),
		"--config=" + a.Config,
		"--nice=" + strconv.Itoa(a.Nice),
	}
}

// serveQuery starts both listeners, then blocks in a statement reading
// stdin: the server lives exactly as long as its stdin stays open, so the
// child exits when the parent closes the pipe or dies.
const serveQuery = "SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; " +
	"SELECT count() FROM file('/dev/stdin', 'LineAsString') FORMAT Null"

// ServeMain is the entry point of the child process that hosts chDB. It
// loads libchdb.so with purego (no cgo) and calls chdb_query_cmdline with
// the server flags; it returns when stdin is closed. It returns the
// process exit code. Never call it in a process that does anything else:
// chDB installs its own signal handlers and allocator.
func ServeMain(args []string) int {
	a, err := parseServeArgs(args, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "clickhouse serve: %v\n", err)
		return 2
	}
	if a.Nice > 0 {
		// Before chDB starts its threads: they inherit the niceness
		// of the thread that creates them.
		if err := lowerPriority(a.Nice); err != nil {
			fmt.Fprintf(os.Stderr, "clickhouse serve: %v (running at the parent's priority)\n", err)
		}
	}
	if err := serve(a); err != nil {
		fmt.Fprintf(os.Stderr, "clickhouse serve: %v\n", err)
		return 1
	}
	return 0
}

func parseServeArgs(args []string, out io.Writer) (ServeArgs, error) {
	var a ServeArgs
	fs := flag.NewFlagSet("clickhouse serve", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&a.Lib, "lib", "", "path of libchdb.so")
	fs.StringVar(&a.Path, "path", "", "ClickHouse data directory")
	fs.StringVar(&a.ListenHost, "listen-host", "127.0.0.1", "listen address")
	fs.IntVar(&a.TCPPort, "tcp-port", 9000, "native protocol port")
	fs.IntVar(&a.HTTPPort, "http-port", 8123, "HTTP port")
	fs.StringVar(&a.Config, "config", "", "configuration file (users)")
	fs.IntVar(&a.Nice, "nice", 0, "niceness of the server's threads (0: the parent's)")
	if err := fs.Parse(args); err != nil {
		return a, err
	}
	switch {
	case a.Lib == "":
		return a, errors.New("--lib is required")
	case a.Path == "":
		return a, errors.New("--path is required")
	case a.TCPPort <= 0 || a.TCPPort > 65535:
		return a, fmt.Errorf("bad --tcp-port %d", a.TCPPort)
	case a.HTTPPort <= 0 || a.HTTPPort > 65535:
		return a, fmt.Errorf("bad --http-port %d", a.HTTPPort)
	case a.Nice < 0 || a.Nice > 19:
		return a, fmt.Errorf("bad --nice %d: want 0 to 19", a.Nice)
	}
	return a, nil
}

// cmdline returns the argv handed to chdb_query_cmdline.
func (a ServeArgs) cmdline() []string {
	args := []string{
		"clickhouse",
		"--path=" + a.Path,
		"--listen_host=" + a.ListenHost,
		"--tcp_port=" + strconv.Itoa(a.TCPPort),
		"--http_port=" + strconv.Itoa(a.HTTPPort),
		"--query=" + serveQuery,
	}
	if a.Config != "" {
		args = append(args, "--config-file="+a.Config)
	}
	return args
}

func serve(a ServeArgs) error {
	if err := os.MkdirAll(a.Path, 0o755); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	lock, err := holdLock(a.Path) // for as long as the server runs
	if err != nil {
		return err
	}
	defer lock.Close()
	lib, err := purego.Dlopen(a.Lib, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return fmt.Errorf("load %s: %w", a.Lib, err)
	}
	// chdb_result *chdb_query_cmdline(int argc, char **argv);
	var queryCmdline func(argc int32, argv **byte) uintptr
	// const char *chdb_result_error(chdb_result *result);
	var resultError func(r uintptr) string
	// void chdb_destroy_query_result(chdb_result *result);
	var destroyResult func(r uintptr)
	purego.RegisterLibFunc(&queryCmdline, lib, "chdb_query_cmdline")
	purego.RegisterLibFunc(&resultError, lib, "chdb_result_error")
	purego.RegisterLibFunc(&destroyResult, lib, "chdb_destroy_query_result")

	args := a.cmdline()
	cstrs := make([][]byte, len(args))
	argv := make([]*byte, len(args)+1)
	for i, s := range args {
		cstrs[i] = append([]byte(s), 0)
		argv[i] = &cstrs[i][0]
	}
	// The Go heap does not move objects; keep the strings reachable for
	// the whole call, which lasts as long as the server runs.
	r := queryCmdline(int32(len(args)), (**byte)(unsafe.Pointer(&argv[0])))
	runtime.KeepAlive(cstrs)
	runtime.KeepAlive(argv)
	if r == 0 {
		return errors.New("chdb_query_cmdline returned no result")
	}
	defer destroyResult(r)
	if msg := resultError(r); msg != "" {
		return fmt.Errorf("chdb: %s", msg)
	}
	return nil
}

// lowerPriority sets every thread of this process to niceness n (on
// Linux, niceness is a thread's, and a new thread takes its creator's).
func lowerPriority(n int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("lower priority: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, n); err != nil {
			return fmt.Errorf("lower priority of thread %d to nice %d: %w", tid, n, err)
		}
	}
	return nil
}
