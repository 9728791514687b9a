package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/lastseen"
	"github.com/iotpipe/iotpipe/processors/replies"
	"github.com/iotpipe/iotpipe/processors/rules"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/iotpipe/iotpipe/processors/shadow/document"
	"github.com/iotpipe/iotpipe/replay"
	"github.com/iotpipe/iotpipe/rulesql"
)

const rebuildUsage = `Usage: iotpipe rebuild [--processor shadows|rules|lastseen|all] [--from-events] [node flags]
       iotpipe rebuild --running [--processor ...] [--from-events] [--api URL] [--token T]

Rebuilds the processors' state of a stopped node (iotpipe run or process,
with the same --data-dir and flags) into a fresh store and swaps it into
<data-dir>/state, a partition at a time; with --running, of a running node
through its HTTP API (POST /api/rebuild), without stopping it:

  from the changelog (default)  the state iotpipe.changelog holds: what any
                                node restores (repairs a damaged or lost state dir)
  --from-events                 the processors run again over the events the
                                log holds, with every effect off, timers and
                                windows timed by the events' receive times; keys
                                where the events give another value than the
                                changelog are written to the changelog first
                                (refused when the log lost events to retention)

It opens the node's embedded log from <data-dir>/kafka (or uses --kafka)
and refuses to run while the node runs. A partition whose local state is
behind the changelog is restored whole, as the node would at its start.

With --running, the node rebuilds the partitions it processes one at a
time, each held between two of its batches while it is rebuilt: ingest
and the other partitions go on, the held partition's events wait in the
log and are applied after, on the rebuilt state. From the events, the
rules run with the node's rules of the moment, and timers and windows are
ticked no further than the node's last tick of the partition, then at it:
what the node fired is not pending again, what it has not fired is.

Flags:
  --processor LIST   shadows, rules, lastseen or all (default all; a comma list)
  --from-events      rebuild from the events instead of the changelog
  --running          rebuild the running node through its HTTP API
  --api URL          its API (default $IOTPIPE_API, else http://<--http-addr>)
  --token SECRET     API token with iotpipe:Admin on api/rebuild (default
                     $IOTPIPE_TOKEN, else <data-dir>/admin.token)
and the node's flags (iotpipe run --help): --data-dir, --kafka, --kafka-port,
--rules, --shadow-*, --config, ...
`

// processorNames maps --processor's words to state names.
var processorNames = map[string]string{"shadows": shadow.Name, "shadow": shadow.Name, "rules": rules.Name, "lastseen": lastseen.Name}

func rebuildMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("iotpipe rebuild", flag.ContinueOnError)
	which := fs.String("processor", "all", "processors to rebuild")
	fromEvents := fs.Bool("from-events", false, "rebuild from the events")
	running := fs.Bool("running", false, "rebuild the running node through its HTTP API")
	api := fs.String("api", os.Getenv("IOTPIPE_API"), "the running node's HTTP API")
	token := fs.String("token", os.Getenv("IOTPIPE_TOKEN"), "API token")
	cfg, err := loadConfig(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, rebuildUsage)
		return 0
	}
	var names []string
	if err == nil {
		err = cfg.validate()
	}
	if err == nil {
		names, err = parseProcessors(*which)
	}
	if err != nil {
		fmt.Fprintf(stderr, "iotpipe rebuild: %v\n\n%s", err, rebuildUsage)
		return 2
	}
	if *running {
		f := apiFlags{api: *api, token: *token, dataDir: cfg.DataDir, timeout: 30 * time.Second}
		if f.api == "" {
			f.api = "http://" + loopbackAddr(cfg.HTTPAddr)
		}
		c, err := f.client()
		if err != nil {
			fmt.Fprintln(stderr, "iotpipe rebuild:", err)
			return 2
		}
		return rebuildRunning(ctx, c, replay.RebuildRequest{Processor: *which, FromEvents: *fromEvents}, stdout, stderr)
	}
	log := cfg.logger()
	lg, err := openStoppedLog(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, "iotpipe rebuild:", err)
		return 1
	}
	defer lg.Close()
	rep, err := replay.Rebuild(ctx, replay.RebuildOptions{
		Clients: lg, StateDir: cfg.path("state"), Topics: lg.Topics(), Processors: names, FromEvents: *fromEvents,
		NewProcessors: nodeProcessors(cfg, lg, log, nil), Logger: log,
	})
	if rep != nil {
		fmt.Fprint(stdout, rebuildReport(rep, *fromEvents))
	}
	if err != nil {
		fmt.Fprintln(stderr, "iotpipe rebuild:", err)
		if ctx.Err() != nil {
			return exitInterrupted
		}
		return 1
	}
	return 0
}

func parseProcessors(s string) ([]string, error) {
	var names []string
	for _, w := range strings.Split(s, ",") {
		w = strings.TrimSpace(w)
		if w == "all" {
			return nil, nil
		}
		n, ok := processorNames[w]
		if !ok {
			return nil, fmt.Errorf("--processor %q: want shadows, rules, lastseen or all", w)
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names, nil
}

// openStoppedLog opens the log of a stopped node: --kafka's, or its
// embedded log from <data-dir>/kafka on a free port, never while the node
// (or another process on the data dir) runs.
func openStoppedLog(ctx context.Context, cfg config, log *slog.Logger) (*eventlog.Log, error) {
	sd, err := processors.OpenStateDir(cfg.path("state"))
	if err != nil {
		return nil, err
	}
	sd.Close()
	creds, err := cfg.kafkaCredentials()
	if err != nil {
		return nil, err
	}
	opts := eventlog.Options{Brokers: cfg.brokers(), Credentials: creds, DataDir: cfg.path("kafka"), Port: -1, Partitions: int32(cfg.Partitions),
		RetentionTime: cfg.Retention, RetentionBytes: cfg.RetentionBytes, Logger: log}
	if cfg.Kafka == "" {
		addr := fmt.Sprintf("127.0.0.1:%d", cfg.KafkaPort)
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		// A running embedded log refuses clients without its
		// credentials: ask with them, and take any answer as running.
		own, _ := eventlog.ReadCredentials(cfg.path("kafka", eventlog.CredentialsFile))
		running, err := eventlog.IsEmbeddedCluster(cctx, []string{addr}, own)
		if err != nil && portAnswers(addr) {
			running = true
		}
		cancel()
		if running {
			return nil, fmt.Errorf("something answers on %s (the embedded log's port): is iotpipe running? stop it first, or rebuild it while it runs with --running (through its HTTP API); --kafka %s uses that log", addr, addr)
		}
	}
	return eventlog.Open(ctx, opts)
}

// loopbackAddr turns a listen address into one to dial: an empty or
// wildcard host is the loopback.
func loopbackAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// portAnswers reports whether something accepts TCP connections on addr.
func portAnswers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// nodeProcessors returns the processors a node with cfg runs, in its
// order: its rules are live's when live is set (a running node's), else
// loaded once from --rules (with their last good versions, as at the
// node's start).
func nodeProcessors(cfg config, lg *eventlog.Log, log *slog.Logger, live *rules.Processor) func() ([]processors.Processor, error) {
	var once sync.Once
	var set *rulesql.Set
	return func() ([]processors.Processor, error) {
		rp := rules.New(rules.Options{Topics: lg.Topics(), Shadow: shadow.NewReader(nil), LastGoodDir: cfg.path("rules-last-good"), Logger: log})
		once.Do(func() {
			if live != nil {
				set = live.Rules()
				return
			}
			if err := rp.Reload(cfg.RulesDir); err != nil {
				log.Warn("rules: some files did not load; their last good versions (if any) run", "dir", cfg.RulesDir, "err", err)
			}
			set = rp.Rules()
		})
		rp.SetRules(set)
		sh := shadow.New(shadow.Options{Topics: lg.Topics(), RateLimit: cfg.ShadowRate,
			Limits: document.Limits{MaxSize: cfg.ShadowMaxSize, MaxDepth: cfg.ShadowMaxDepth}})
		return []processors.Processor{lastseen.Processor{}, sh, rp, replies.Processor{Topic: lg.Topics().Replies}}, nil
	}
}

func rebuildReport(rep *replay.RebuildReport, fromEvents bool) string {
	var b strings.Builder
	from := "the changelog"
	if fromEvents {
		from = "the events"
	}
	fmt.Fprintf(&b, "rebuilt from %s: %d partitions\n", from, rep.Partitions)
	for _, n := range slices.Sorted(maps.Keys(rep.Processors)) {
		c := rep.Processors[n]
		fmt.Fprintf(&b, "  %-9s %d keys, %d differed from the local state", n, c.Keys, c.Differed)
		if fromEvents {
			fmt.Fprintf(&b, ", %d written to the changelog", c.Written)
		}
		b.WriteString("\n")
	}
	if len(rep.Whole) > 0 {
		fmt.Fprintf(&b, "  restored whole (their local state was behind the changelog): partitions %v\n", rep.Whole)
	}
	return b.String()
}
