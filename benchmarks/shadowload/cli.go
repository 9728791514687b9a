package shadowload

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
)

// Usage is the help text of `iotpipe bench shadows`.
const Usage = `Usage: iotpipe bench shadows [flags]

Measure device shadow updates per second through iotpipe's processor
runtime: an embedded event log (in a temporary directory) is loaded with
typical device shadow updates (nine reported updates of 7 leaves for each
desired update of 4), then the processors consume them, keep the shadows
in Pebble and produce every accepted, delta, documents and changelog
record back to the log before each commit. The log and the processors
share this process and its cores.

Example:
  iotpipe bench shadows --updates 200000 --things 1000 --partitions 2

Flags:
`

// Command runs `iotpipe bench shadows` with args (the arguments after
// "shadows") and returns the exit status.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("iotpipe bench shadows", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), Usage)
		fs.PrintDefaults()
	}
	var o Options
	partitions := fs.Int("partitions", 2, "partitions of the events topic, processed in parallel")
	fs.IntVar(&o.Updates, "updates", 200_000, "shadow updates to apply")
	fs.IntVar(&o.Things, "things", 1000, "things (each with its shadow) the updates go to")
	quiet := fs.Bool("quiet", false, "no progress lines")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 || o.Updates <= 0 || o.Things <= 0 || *partitions <= 0 {
		fmt.Fprintf(stderr, "iotpipe bench shadows: --updates, --things and --partitions must be positive, and no arguments are taken\n")
		return 2
	}
	o.Partitions = int32(*partitions)
	if !*quiet {
		o.Progress = stderr
		fmt.Fprintf(stderr, "loading %d updates over %d things into an embedded log with %d partitions...\n", o.Updates, o.Things, o.Partitions)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	res, err := Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "iotpipe bench shadows: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, res)
	return 0
}
