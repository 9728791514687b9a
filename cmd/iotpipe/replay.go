package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/iotpipe/iotpipe/replay"
	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/rulesql/ruletest"
)

const replayUsage = `Usage: iotpipe replay --rules PATH [selection] [--export FILE.parquet]
       iotpipe replay --diff OLD_PATH NEW_PATH [selection] [--json]
       iotpipe replay --trace --rules PATH --thing NAME [selection] [--json]
       iotpipe replay --to-mqtt PREFIX [--speed 1|10|max] [selection] [MQTT flags]

Runs rule files (.sql files or directories) over the events the log holds,
with every effect off: nothing is produced to any topic, no webhook,
command or sink is reached. The rules start from empty state (pewma,
windows, FOR timers) and are timed by the events' receive times, as the
stream processors would have run them. The outputs are printed as
iotpipe rules test prints them: replaying a time window gives exactly
what rules test gives for the same events exported with
iotpipe events --json (and GROUP BY windows run too). A summary (events
read, matched, fired and errors per rule) goes to stderr.

--diff runs two versions of the rules over the same events and prints,
per rule, the outputs added, removed and changed, with examples (all of
them as JSON lines with --json); the exit status is 1 when they differ.

--trace prints, for every event of --thing, why each rule did or did not
fire: the topic match, the WHERE value with the Undefined attributes
named, the output or the error, and what the timers and windows that time
passing fired.

--to-mqtt is the one mode with an effect, and only when asked for: it
re-publishes the selected device publishes over MQTT, each to
PREFIX/<its topic> with its payload and QoS (at most 1; never retained),
with the spacing their receive times had, divided by --speed (max: as fast
as they are acknowledged), to drive a test environment with real history.
Lifecycle events are skipped. Progress goes to stderr on a terminal; a
summary (published, failed, skipped, the history's span and how long it
took) at the end.

Selection (as iotpipe events):
  --thing NAME, --topic FILTER, --type LIST, --from TIME, --to TIME, --limit N
  --kafka BROKERS   the log's brokers (default $IOTPIPE_KAFKA, else 127.0.0.1:9092)
  --events-topic T  the events topic (default iotpipe.events)
Flags:
  --rules PATH      rule file or directory (may be repeated)
  --export FILE     also write the outputs to FILE as Parquet
  --json            --diff and --trace: JSON lines
MQTT flags (--to-mqtt):
  --speed S         1 (default: the original spacing), 10 (ten times faster), 0.5, or max
  --mqtt ADDR       the broker's host:port (default $IOTPIPE_MQTT, else 127.0.0.1:1883)
  --mqtt-username U, --mqtt-password P   CONNECT credentials (iotpipe: a token as the password)
  --tls-ca FILE     connect over TLS, trusting this CA (iotpipe's: <data-dir>/pki/ca.pem)
  --cert FILE, --key FILE   a client certificate for TLS

Exit status: 0, 1 on a failure (or, with --diff, when the outputs differ),
2 on bad usage, 130 when interrupted.
`

// pathsFlag collects a repeated flag.
type pathsFlag []string

func (p *pathsFlag) String() string     { return strings.Join(*p, ",") }
func (p *pathsFlag) Set(v string) error { *p = append(*p, v); return nil }

// replayGCPercent is the GC target of a replay (unless GOGC is set): a
// batch job whose live heap is small and bounded (segments of events,
// the rules' state in memtables) spends less on GC with a larger target
// (BenchmarkReplay with GOGC=400: +8-10% events/s).
const replayGCPercent = 400

func replayMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(replayGCPercent)
	}
	fs := flag.NewFlagSet("iotpipe replay", flag.ContinueOnError)
	var ls logSelection
	ls.bind(fs, false)
	var rules pathsFlag
	fs.Var(&rules, "rules", "rule files or directories")
	diff := fs.Bool("diff", false, "compare two versions")
	trace := fs.Bool("trace", false, "explain every rule for every event")
	asJSON := fs.Bool("json", false, "JSON lines")
	export := fs.String("export", "", "Parquet file")
	var mq mqttTarget
	mq.bind(fs)
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, replayUsage)
		return 0
	}
	if err == nil && mq.prefix != "" {
		err = mq.check(*diff, *trace, rules, pos, *export)
	} else if err == nil {
		err = checkReplayArgs(*diff, *trace, rules, pos, ls.thing, *export)
	}
	var sel replay.Selection
	if err == nil {
		sel, err = ls.selection(time.Now())
	}
	if err != nil {
		fmt.Fprintf(stderr, "iotpipe replay: %v\n\n%s", err, replayUsage)
		return 2
	}
	if mq.prefix != "" {
		return replayToMQTT(ctx, &ls, sel, &mq, stderr)
	}
	var sets []*rulesql.Set
	for _, paths := range ruleSets(*diff, rules, pos) {
		set, err := ruletest.Load(paths)
		if err != nil {
			var es rulesql.Errors
			if errors.As(err, &es) {
				for _, e := range es {
					fmt.Fprintln(stderr, e.Error())
				}
			} else {
				fmt.Fprintln(stderr, "iotpipe replay:", err)
			}
			return 1
		}
		sets = append(sets, set)
	}
	log, plan, err := ls.plan(ctx, sel)
	if err != nil {
		fmt.Fprintln(stderr, "iotpipe replay:", err)
		return 1
	}
	opts := replay.Options{Partitions: plan.Partitions}
	var read replay.Counter
	defer progress(stderr, "replay", sel, plan, &read)()
	w := bufio.NewWriterSize(stdout, 64<<10)
	defer w.Flush()
	readAll := func(add func(context.Context, *replay.Event) error) error {
		return replay.Read(ctx, log, sel, plan, &read, func(ev *replay.Event) error { return add(ctx, ev) })
	}
	switch {
	case *diff:
		return replayDiff(ctx, sets[0], sets[1], opts, readAll, *asJSON, w, stderr)
	case *trace:
		return replayTrace(ctx, sets[0], opts, readAll, *asJSON, w, stderr)
	}
	var pq *replay.OutputsParquet
	if *export != "" {
		if pq, err = replay.CreateOutputsParquet(*export); err != nil {
			fmt.Fprintln(stderr, "iotpipe replay:", err)
			return 1
		}
	}
	eng, err := replay.NewEngine(sets[0], opts, func(o replay.Output) error {
		w.Write(o.Line)
		w.WriteByte('\n')
		if pq != nil {
			return pq.Write(o)
		}
		return nil
	})
	if err != nil {
		fmt.Fprintln(stderr, "iotpipe replay:", err)
		return 1
	}
	err = readAll(eng.Add)
	err = errors.Join(err, eng.Close(context.WithoutCancel(ctx)), w.Flush())
	if pq != nil {
		err = errors.Join(err, pq.Close())
	}
	stderr.Write(replay.AppendSummaryText(nil, eng.Summary()))
	return finish(stderr, "iotpipe replay", err, ctx)
}

// checkReplayArgs checks the combination of modes and arguments.
func checkReplayArgs(diff, trace bool, rules pathsFlag, pos []string, thing, export string) error {
	switch {
	case diff && trace:
		return errors.New("--diff and --trace are separate modes")
	case diff && (len(pos) != 2 || len(rules) > 0):
		return errors.New("--diff takes two rule paths, the old version and the new one: iotpipe replay --diff OLD_PATH NEW_PATH")
	case diff && export != "":
		return errors.New("--export writes the outputs of one version: run iotpipe replay --rules PATH --export FILE for each")
	case !diff && len(rules)+len(pos) == 0:
		return errors.New("no rules: give --rules PATH")
	case trace && thing == "":
		return errors.New("--trace explains every rule for every event: give the --thing to trace")
	case trace && export != "":
		return errors.New("--trace writes no Parquet file")
	}
	return nil
}

// ruleSets returns the paths of each rule set to load: old and new for
// a diff, else one set of --rules and positional paths.
func ruleSets(diff bool, rules pathsFlag, pos []string) [][]string {
	if diff {
		return [][]string{{pos[0]}, {pos[1]}}
	}
	return [][]string{append(append([]string(nil), rules...), pos...)}
}

func replayDiff(ctx context.Context, old, new *rulesql.Set, opts replay.Options, readAll func(func(context.Context, *replay.Event) error) error,
	asJSON bool, w *bufio.Writer, stderr io.Writer) int {
	var each func(replay.Change) error
	if asJSON {
		each = func(c replay.Change) error {
			b, err := json.Marshal(c)
			if err != nil {
				return err
			}
			w.Write(b)
			return w.WriteByte('\n')
		}
	}
	d, err := replay.NewDiffer(old, new, opts, each)
	if err != nil {
		fmt.Fprintln(stderr, "iotpipe replay:", err)
		return 1
	}
	err = readAll(d.Add)
	diffs, cerr := d.Close(context.WithoutCancel(ctx))
	if code := finish(stderr, "iotpipe replay", errors.Join(err, cerr), ctx); code != 0 {
		return code
	}
	differ := 0
	for _, r := range diffs {
		if r.Differs() {
			differ++
		}
		if !asJSON {
			w.Write(replay.AppendRuleDiffText(nil, r))
		}
	}
	if err := w.Flush(); err != nil {
		fmt.Fprintln(stderr, "iotpipe replay:", err)
		return 1
	}
	sum, _ := d.Summaries()
	fmt.Fprintf(stderr, "replay --diff: %d events, %d of %d rules differ\n", sum.Events, differ, len(diffs))
	if differ > 0 {
		return 1
	}
	return 0
}

func replayTrace(ctx context.Context, set *rulesql.Set, opts replay.Options, readAll func(func(context.Context, *replay.Event) error) error,
	asJSON bool, w *bufio.Writer, stderr io.Writer) int {
	tr, err := replay.NewTracer(set, opts, func(et *replay.EventTrace) error {
		if asJSON {
			b, err := replay.AppendTraceJSON(nil, et)
			if err != nil {
				return err
			}
			_, err = w.Write(b)
			return err
		}
		_, err := w.Write(replay.AppendTraceText(nil, et))
		return err
	})
	if err != nil {
		fmt.Fprintln(stderr, "iotpipe replay:", err)
		return 1
	}
	err = readAll(tr.Add)
	err = errors.Join(err, tr.Close(context.WithoutCancel(ctx)), w.Flush())
	stderr.Write(replay.AppendSummaryText(nil, tr.Summary()))
	return finish(stderr, "iotpipe replay", err, ctx)
}
