// Command logcount samples the number of records in a Kafka topic (the sum
// of its partitions' end offsets, from ListOffsets: nothing is fetched) and
// prints "unix_ns records" lines, once or every --interval until killed.
// benchmarks/run-mqtt.sh uses it to measure records written per second into
// iotpipe's log during a QoS 0 run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/internal/eventlog"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx))
}

func run(ctx context.Context) int {
	fs := flag.NewFlagSet("logcount", flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "Kafka seed brokers `host:port,...`")
	topic := fs.String("topic", "iotpipe.events", "topic whose records to count")
	interval := fs.Duration("interval", 0, "sample every interval until interrupted (0: once)")
	credsFile := fs.String("credentials", "", "credentials file of the log (an iotpipe embedded log's <data-dir>/kafka/credentials.json)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	opts := []kgo.Opt{kgo.SeedBrokers(strings.Split(*brokers, ",")...)}
	if *credsFile != "" {
		c, err := eventlog.ReadCredentials(*credsFile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "logcount: %v\n", err)
			return 2
		}
		auth, err := c.Opt()
		if err != nil {
			fmt.Fprintf(os.Stderr, "logcount: %v\n", err)
			return 2
		}
		opts = append(opts, auth)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "logcount: connecting to %s: %v\n", *brokers, err)
		return 1
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	sample := func() error {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		offs, err := adm.ListEndOffsets(qctx, *topic)
		if err != nil {
			return fmt.Errorf("listing end offsets of %s: %w", *topic, err)
		}
		if err := offs.Error(); err != nil {
			return fmt.Errorf("listing end offsets of %s: %w", *topic, err)
		}
		var n int64
		offs.Each(func(o kadm.ListedOffset) { n += o.Offset })
		fmt.Printf("%d %d\n", time.Now().UnixNano(), n)
		return nil
	}
	if *interval <= 0 {
		if err := sample(); err != nil {
			fmt.Fprintf(os.Stderr, "logcount: %v\n", err)
			return 1
		}
		return 0
	}
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		if err := sample(); err != nil && ctx.Err() == nil {
			fmt.Fprintf(os.Stderr, "logcount: %v\n", err)
		}
		select {
		case <-ctx.Done():
			return 0
		case <-t.C:
		}
	}
}
