package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/rulesql/ruletest"
)

const rulesCheckUsage = `Usage: iotpipe rules check PATH... [--kafka host:port,...]

Parses and checks rule files (.sql files or directories); errors are
printed as file:line:col: message (exit 1).

With --kafka, it also checks that the topics the rules' kafka actions
name exist on that cluster and lists the missing ones (exit 1); an
iotpipe embedded log creates them on first use, so there they are only
listed. Without --kafka the topics are listed as not checked.

Flags:
  --kafka BROKERS   Kafka seed brokers to check the kafka actions' topics on
                    (default $IOTPIPE_KAFKA; empty: not checked)
`

// rulesMain implements "iotpipe rules check PATH... [--kafka ...]" and
// "iotpipe rules test PATH... --input events.jsonl"; args are the
// arguments after "rules". It returns the exit code (0 ok, 1 rule errors,
// missing topics or a failed run, 2 bad usage).
func rulesMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		return ruletest.Main(ctx, args, stdout, stderr)
	}
	fs := flag.NewFlagSet("iotpipe rules check", flag.ContinueOnError)
	kafka := fs.String("kafka", sqlEnvOr("IOTPIPE_KAFKA", ""), "Kafka seed brokers")
	credsFile := fs.String("kafka-credentials", sqlEnvOr("IOTPIPE_KAFKA_CREDENTIALS", ""), "Kafka credentials file (default: data/kafka/credentials.json when it exists)")
	paths, err := parseArgs(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, rulesCheckUsage)
		return 0
	}
	if err != nil || len(paths) == 0 {
		if err == nil {
			err = errors.New("no rule files given")
		}
		fmt.Fprintf(stderr, "iotpipe rules check: %v\n\n%s", err, rulesCheckUsage)
		return 2
	}
	if code := ruletest.Main(ctx, append([]string{"check", "--"}, paths...), stdout, stderr); code != 0 {
		return code
	}
	set, err := ruletest.Load(paths)
	if err != nil { // checked just above
		fmt.Fprintln(stderr, "iotpipe rules check:", err)
		return 1
	}
	var creds *eventlog.Credentials
	if *kafka != "" {
		path := *credsFile
		if path == "" {
			if _, err := os.Stat(filepath.Join("data", "kafka", eventlog.CredentialsFile)); err == nil {
				path = filepath.Join("data", "kafka", eventlog.CredentialsFile)
			}
		}
		if path != "" {
			if creds, err = eventlog.ReadCredentials(path); err != nil {
				fmt.Fprintln(stderr, "iotpipe rules check:", err)
				return 2
			}
		}
	}
	return checkKafkaTopics(ctx, set, *kafka, creds, stdout, stderr)
}

// kafkaTarget is a topic a kafka action names and the rules naming it.
type kafkaTarget struct {
	topic string
	rules []string
}

// kafkaTargets lists the topics the kafka actions of set name, in order
// of first use, and the rules whose topic is a template (known only
// when they fire).
func kafkaTargets(set *rulesql.Set) (targets []kafkaTarget, templated []string) {
	at := map[string]int{}
	for _, r := range set.Rules {
		acts := r.Actions
		if r.ErrorAction != nil {
			acts = append(acts[:len(acts):len(acts)], r.ErrorAction)
		}
		for _, a := range acts {
			if a.Type != "kafka" {
				continue
			}
			t, ok := a.Args["topic"].(*rulesql.Template)
			if !ok {
				continue // refused by the checker
			}
			if strings.Contains(t.Source, "${") {
				templated = append(templated, r.Name)
				continue
			}
			i, seen := at[t.Source]
			if !seen {
				i = len(targets)
				at[t.Source] = i
				targets = append(targets, kafkaTarget{topic: t.Source})
			}
			targets[i].rules = append(targets[i].rules, r.Name)
		}
	}
	return targets, templated
}

// checkKafkaTopics says which kafka action topics are missing on the
// cluster at brokers, or that they were not checked.
func checkKafkaTopics(ctx context.Context, set *rulesql.Set, brokers string, creds *eventlog.Credentials, stdout, stderr io.Writer) int {
	targets, templated := kafkaTargets(set)
	for _, r := range templated {
		fmt.Fprintf(stdout, "note: rule %s names its kafka topic with a template: not checked\n", r)
	}
	if len(targets) == 0 {
		return 0
	}
	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.topic
	}
	if brokers == "" {
		fmt.Fprintf(stdout, "kafka topics not checked (pass --kafka host:port to check they exist): %s\n", strings.Join(names, ", "))
		return 0
	}
	seeds := strings.Split(brokers, ",")
	missing, err := eventlog.MissingTopics(ctx, seeds, creds, names)
	if err != nil {
		fmt.Fprintf(stderr, "iotpipe rules check: kafka topics not checked: %v\n", err)
		return 1
	}
	if len(missing) == 0 {
		fmt.Fprintf(stdout, "kafka topics exist on %s: %s\n", brokers, strings.Join(names, ", "))
		return 0
	}
	embedded, err := eventlog.IsEmbeddedCluster(ctx, seeds, creds)
	if err != nil {
		fmt.Fprintf(stderr, "iotpipe rules check: %v\n", err)
		return 1
	}
	for _, t := range targets {
		for _, m := range missing {
			if m == t.topic {
				fmt.Fprintf(stdout, "missing kafka topic %s on %s (rules %s)\n", t.topic, brokers, strings.Join(t.rules, ", "))
			}
		}
	}
	if embedded {
		fmt.Fprintln(stdout, "this is an iotpipe embedded log: it creates them on first use")
		return 0
	}
	fmt.Fprintln(stderr, "iotpipe rules check: create the missing topics on the cluster, or their firings go to the DLQ")
	return 1
}
