package ruletest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/iotpipe/iotpipe/rulesql"
)

const usage = `usage: iotpipe rules <command> [arguments]

Commands:
  check PATH...                    parse and check rule files (.sql files or directories)
  test PATH... --input events.jsonl  run the rules over sample events, no server needed

check prints file:line:col: message for every error and exits 1, or a
summary and exits 0.

test reads one event per line,
  {"topic": "...", "payload": <JSON, or a string for non-JSON>,
   "clientid": "...", "principal": "...", "thing": "...", "timestamp": <epoch ms>}
(all but topic and payload optional; "-" reads standard input; the
output of iotpipe events --json is such input) and prints one line per
rule output, in input order:
  {"rule": "...", "output": {...}, "actions": [{"type": "...", "params": {...}}]}
FOR rules are timed by the events' timestamps as the stream processors
time them: an episode fires at its deadline, at the first event of any
thing in a later second (or an event of its own thing past it).
`

// Main runs "iotpipe rules ..." with args after "rules" and returns the
// process exit code: 0 ok, 1 rule errors or a failed run, 2 bad usage.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "check":
		return check(args[1:], stdout, stderr)
	case "test":
		return test(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "iotpipe rules: unknown command %q\n\n%s", args[0], usage)
	return 2
}

// splitFlags separates flags from positional arguments so flags may come
// after the paths (iotpipe rules test rules/ --input x.jsonl).
func splitFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) > 0 {
			pos = append(pos, args[0])
			args = args[1:]
		}
	}
	return pos, nil
}

func check(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("iotpipe rules check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: iotpipe rules check PATH...\n\nParse and check rule files; errors are printed as file:line:col: message.\n")
	}
	paths, err := splitFlags(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(paths) == 0 {
		fs.Usage()
		return 2
	}
	set, err := Load(paths)
	if err != nil {
		printErr(stderr, err)
		return 1
	}
	files := map[string]bool{}
	for _, r := range set.Rules {
		files[r.File] = true
	}
	fmt.Fprintf(stdout, "ok: %d rules in %d files\n", len(set.Rules), len(files))
	for _, r := range set.Rules {
		extra := ""
		if len(r.Actions) > 0 {
			types := make([]string, len(r.Actions))
			for i, a := range r.Actions {
				types[i] = a.Type
			}
			extra = " -> " + strings.Join(types, ", ")
		}
		fmt.Fprintf(stdout, "  %s  FROM '%s'%s\n", r.Name, r.Topic, extra)
	}
	return 0
}

func printErr(w io.Writer, err error) {
	var es rulesql.Errors
	if errors.As(err, &es) {
		for _, e := range es {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, "iotpipe rules:", err)
}

func test(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("iotpipe rules test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	input := fs.String("input", "", "JSON Lines file of events (- for standard input)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: iotpipe rules test PATH... --input events.jsonl\n\nRun rules over sample events; one output line per rule output.\n\n")
		fs.PrintDefaults()
	}
	paths, err := splitFlags(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(paths) == 0 || *input == "" {
		fs.Usage()
		return 2
	}
	set, err := Load(paths)
	if err != nil {
		printErr(stderr, err)
		return 1
	}
	for _, rule := range set.Rules {
		if rule.Window != nil {
			fmt.Fprintf(stderr, "iotpipe rules test: note: rule %s has a GROUP BY window; windows are run by the rules processor, not by rules test\n", rule.Name)
		}
	}
	var r io.Reader = os.Stdin
	if *input != "-" {
		f, err := os.Open(*input)
		if err != nil {
			fmt.Fprintln(stderr, "iotpipe rules test:", err)
			return 1
		}
		defer f.Close()
		r = f
	}
	if err := Run(ctx, set, r, stdout, Options{}); err != nil {
		fmt.Fprintln(stderr, "iotpipe rules test:", err)
		return 1
	}
	return 0
}
