// Command iotpipe is a self-hosted data plane for device fleets: an MQTT
// front writing every device event to a Kafka log, and stream processors,
// rules and sinks derived from that log. One binary, several roles.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"syscall"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/sinks/clickhouse/embedded"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	run    func(ctx context.Context, args []string, stdout, stderr io.Writer) int
	help   string
	hidden bool
}

func commands() map[string]command {
	return map[string]command{
		"run":      {run: runMain, help: "run the whole pipeline (embedded log, MQTT, processors, sinks, ClickHouse, HTTP API)"},
		"ingest":   {run: ingestMain, help: "run the MQTT/HTTP front only"},
		"process":  {run: processMain, help: "run the stream processors only (last-seen, shadows, rules)"},
		"sink":     {run: sinkMain, help: "run the sinks only (ClickHouse, republish, command, webhook, kafka)"},
		"version":  {run: versionMain, help: "print the version"},
		"rules":    {run: rulesMain, help: "check and test rule files (rules check|test)"},
		"bench":    {run: benchMain, help: "load generators and benchmarks (iotpipe bench mqtt --help)"},
		"sql":      {run: sqlMain, help: "run a query against ClickHouse (iotpipe sql \"SELECT ...\")"},
		"events":   {run: eventsMain, help: "print the log's events by thing, topic, type and time (--json: rules test input)"},
		"rebuild":  {run: rebuildMain, help: "rebuild a stopped node's processor state from the changelog or the events"},
		"replay":   {run: replayMain, help: "run rules over history with effects off (--diff two versions, --trace why a rule fired)"},
		"things":   {run: registryGroupMain("things"), help: "manage things (create, list, describe, update, delete, attach, detach)"},
		"certs":    {run: registryGroupMain("certs"), help: "device certificates (create with iotpipe's CA, register your own, activate, revoke, ...)"},
		"ca":       {run: registryGroupMain("ca"), help: "CA certificates for just-in-time registration (register, list, ...)"},
		"policies": {run: registryGroupMain("policies"), help: "AWS IoT policies (create, update, get, list, delete, attach, detach)"},
		"tokens":   {run: registryGroupMain("tokens"), help: "API and MQTT tokens (create, list, revoke, secret)"},
		"simulate": {run: simulateMain, help: "run a fleet of simulated devices against an MQTT broker (iotpipe simulate --help)"},
		"clickhouse": {run: clickhouseMain, hidden: true,
			help: "the embedded ClickHouse server's child process (clickhouse serve)"},
	}
}

func main() {
	if os.Getenv("GOGC") == "" {
		// See processors.GCPercent (GOGC in the environment wins).
		debug.SetGCPercent(processors.GCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal starts a drain; a second one ends the process at
	// once (the default action is back).
	context.AfterFunc(ctx, stop)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 {
		usage(stderr, cmds)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout, cmds)
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "iotpipe: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "iotpipe: an open, self-hosted data plane for device fleets.")
	fmt.Fprintln(w, "\nUsage: iotpipe <command> [flags]   (iotpipe <command> --help for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(cmds))
	for n, c := range cmds {
		if !c.hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].help)
	}
}

// clickhouseMain is the hidden role the embedded ClickHouse supervisor
// starts: `iotpipe clickhouse serve ...` loads chDB in this (child)
// process only, never in the main one.
func clickhouseMain(_ context.Context, args []string, _, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "serve" {
		fmt.Fprintln(stderr, "usage: iotpipe clickhouse serve --lib=... --path=... (started by iotpipe run; not for direct use)")
		return 2
	}
	return embedded.ServeMain(args[1:])
}

func versionMain(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "iotpipe version: unexpected argument %q: version takes none\n", args[0])
		return 2
	}
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok && v == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v = bi.Main.Version
	}
	fmt.Fprintln(stdout, "iotpipe", v)
	return 0
}

// parseArgs parses args into fs with flags before, between and after the
// positional arguments, which it returns in order ("--" ends the flags:
// everything after it is positional). fs prints nothing: -h returns
// flag.ErrHelp and a bad flag its error, for the caller to print once.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if i := len(args) - len(rest) - 1; i >= 0 && args[i] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseFlagsOnly parses args into fs for a command that takes flags only:
// -h prints usage and fs's flags on stdout, a bad flag or a positional
// argument an error on stderr. done says the command ends here with code.
func parseFlagsOnly(fs *flag.FlagSet, args []string, name, usage string, stdout, stderr io.Writer) (code int, done bool) {
	pos, err := parseArgs(fs, args)
	if err == nil && len(pos) > 0 {
		err = fmt.Errorf("unexpected argument %q: flags only", pos[0])
	}
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return 0, true
	default:
		fmt.Fprintf(stderr, "iotpipe %s: %v (see --help)\n", name, err)
		return 2, true
	}
}
