package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/replay"
	"github.com/iotpipe/iotpipe/schemas"
)

const eventsUsage = `Usage: iotpipe events [flags]

Prints the events of the log, decoded, one per line: a text line by
default, with --json the iotpipe rules test input (each line also names
its type, partition and offset), so that
  iotpipe events --from -1h --json > last-hour.jsonl
  iotpipe rules test rules/ --input last-hour.jsonl
runs rules over real history. Events come in receive-time order across
partitions (each partition's order kept); with --follow, as they come.
It reads the log of a running iotpipe (or --kafka) and writes nothing.

Flags:
  --thing NAME      only this thing's events (only its partition is read)
  --topic FILTER    only events whose topic matches this MQTT filter ('farm/+/temp', 'farm/#')
  --type LIST       only these event types: publish,connected,disconnected,subscribed,unsubscribed
  --from TIME       from this receive time on (RFC 3339, a date, or relative: -2h, -1d)
  --to TIME         up to this receive time, excluded (default: the log's end now)
  --follow          then keep printing new events (Ctrl-C stops)
  --limit N         stop after N events (default 0: no limit)
  --json            JSON lines (the rules test input) instead of text
  --export FILE     also write the events to FILE as Parquet (.parquet)
  --kafka BROKERS   the log's brokers (default $IOTPIPE_KAFKA, else 127.0.0.1:9092)
  --kafka-credentials FILE  the log's SASL credentials (default: <data-dir>/kafka/credentials.json,
                    the embedded log's own, when it exists)
  --data-dir DIR    data directory of iotpipe run (default data, or $IOTPIPE_DATA_DIR)
  --events-topic T  the events topic (default iotpipe.events)

--from and --to are found with ListOffsets by time, never by reading the
log from its start. Progress goes to stderr when it is a terminal.
Exit status: 0, 1 on a failure, 2 on bad usage, 130 when interrupted.
`

// logSelection is the flags that choose events, shared by events and
// replay.
type logSelection struct {
	kafka, creds, dataDir, topic, thing, topicFilter, types, from, to string
	follow                                                            bool
	limit                                                             int
}

func (s *logSelection) bind(fs *flag.FlagSet, follow bool) {
	fs.StringVar(&s.kafka, "kafka", sqlEnvOr("IOTPIPE_KAFKA", "127.0.0.1:9092"), "the log's brokers")
	fs.StringVar(&s.creds, "kafka-credentials", os.Getenv("IOTPIPE_KAFKA_CREDENTIALS"), "the log's credentials file")
	fs.StringVar(&s.dataDir, "data-dir", sqlEnvOr("IOTPIPE_DATA_DIR", "data"), "data directory of iotpipe run")
	fs.StringVar(&s.topic, "events-topic", schemas.DefaultTopics().Events, "the events topic")
	fs.StringVar(&s.thing, "thing", "", "only this thing's events")
	fs.StringVar(&s.topicFilter, "topic", "", "MQTT topic filter")
	fs.StringVar(&s.types, "type", "", "event types")
	fs.StringVar(&s.from, "from", "", "from this receive time")
	fs.StringVar(&s.to, "to", "", "up to this receive time")
	fs.IntVar(&s.limit, "limit", 0, "most events")
	if follow {
		fs.BoolVar(&s.follow, "follow", false, "keep reading new events")
	}
}

// selection builds the Selection the flags describe, relative times
// against now.
func (s *logSelection) selection(now time.Time) (replay.Selection, error) {
	sel := replay.Selection{Thing: s.thing, Topic: s.topicFilter, Follow: s.follow, Limit: s.limit}
	var err error
	if sel.Types, err = replay.ParseTypes(s.types); err != nil {
		return sel, fmt.Errorf("--type: %w", err)
	}
	if s.from != "" {
		if sel.From, err = replay.ParseTime(s.from, now); err != nil {
			return sel, fmt.Errorf("--from: %w", err)
		}
	}
	if s.to != "" {
		if sel.To, err = replay.ParseTime(s.to, now); err != nil {
			return sel, fmt.Errorf("--to: %w", err)
		}
	}
	return sel, sel.Validate()
}

// log returns the events topic of the brokers the flags name, with the
// credentials --kafka-credentials names, else the embedded log's under
// --data-dir when there are some.
func (s *logSelection) log() (replay.Log, error) {
	seeds := strings.Split(s.kafka, ",")
	c := config{Kafka: s.kafka, KafkaCreds: s.creds, DataDir: s.dataDir}
	base := []kgo.Opt{kgo.SeedBrokers(seeds...)}
	creds, err := c.kafkaCredentials()
	if err != nil {
		return replay.Log{}, err
	}
	if creds != nil {
		o, err := creds.Opt()
		if err != nil {
			return replay.Log{}, err
		}
		base = append(base, o)
	}
	return replay.Log{Topic: s.topic, Client: func(opts ...kgo.Opt) (*kgo.Client, error) {
		return kgo.NewClient(append(base[:len(base):len(base)], opts...)...)
	}}, nil
}

// plan plans the read of sel from the log the flags name.
func (s *logSelection) plan(ctx context.Context, sel replay.Selection) (replay.Log, replay.Plan, error) {
	log, err := s.log()
	if err != nil {
		return log, replay.Plan{}, err
	}
	plan, err := replay.PlanRead(ctx, log, sel)
	if err != nil {
		err = fmt.Errorf("%w (is iotpipe running? --kafka names another log)", err)
	}
	return log, plan, err
}

// progress draws the progress of a bounded read on stderr when it is a
// terminal; the function returned ends it.
func progress(stderr io.Writer, what string, sel replay.Selection, plan replay.Plan, read *replay.Counter) func() {
	if !isTerminal(stderr) || sel.Follow {
		return func() {}
	}
	return replay.StartProgress(stderr, what, plan.Records(), read, 200*time.Millisecond).Stop
}

// isTerminal reports whether w is a terminal (progress is drawn there
// only).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// exitInterrupted is the exit status of a command stopped by Ctrl-C.
const exitInterrupted = 130

func eventsMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("iotpipe events", flag.ContinueOnError)
	var ls logSelection
	ls.bind(fs, true)
	asJSON := fs.Bool("json", false, "JSON lines")
	export := fs.String("export", "", "Parquet file")
	pos, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, eventsUsage)
		return 0
	}
	if err == nil && len(pos) > 0 {
		err = fmt.Errorf("unexpected argument %q: events takes flags only", pos[0])
	}
	var sel replay.Selection
	if err == nil {
		sel, err = ls.selection(time.Now())
	}
	if err != nil {
		fmt.Fprintf(stderr, "iotpipe events: %v\n\n%s", err, eventsUsage)
		return 2
	}
	log, plan, err := ls.plan(ctx, sel)
	if err != nil {
		fmt.Fprintln(stderr, "iotpipe events:", err)
		return 1
	}
	var pq *replay.EventsParquet
	if *export != "" {
		if pq, err = replay.CreateEventsParquet(*export); err != nil {
			fmt.Fprintf(stderr, "iotpipe events: %v\n", err)
			return 1
		}
	}
	var read replay.Counter
	defer progress(stderr, "events", sel, plan, &read)()
	w := bufio.NewWriterSize(stdout, 64<<10)
	var line []byte
	n := 0
	err = replay.Read(ctx, log, sel, plan, &read, func(ev *replay.Event) error {
		line = line[:0]
		if *asJSON {
			var err error
			if line, err = replay.AppendJSON(line, ev); err != nil {
				return err
			}
		} else {
			line = replay.AppendText(line, ev)
		}
		if _, err := w.Write(line); err != nil {
			return err
		}
		n++
		if sel.Follow {
			if err := w.Flush(); err != nil {
				return err
			}
		}
		if pq != nil {
			return pq.Write(ev)
		}
		return nil
	})
	ferr := w.Flush()
	if pq != nil {
		ferr = errors.Join(ferr, pq.Close())
	}
	return finish(stderr, "iotpipe events", errors.Join(err, ferr), ctx)
}

// finish reports how a command that read the log ended and returns its
// exit status.
func finish(stderr io.Writer, name string, err error, ctx context.Context) int {
	switch {
	case ctx.Err() != nil:
		fmt.Fprintf(stderr, "%s: interrupted\n", name)
		return exitInterrupted
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
