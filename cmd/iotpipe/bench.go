package main

import (
	"context"
	"fmt"
	"io"

	"github.com/iotpipe/iotpipe/benchmarks/mqttload"
	"github.com/iotpipe/iotpipe/benchmarks/shadowload"
)

const benchUsage = `Usage: iotpipe bench <target> [flags]

Load generators and benchmarks over real connections.

Targets:
  mqtt     publish MQTT 3.1.1 load to a broker and measure acknowledged
           messages per second and publish→PUBACK latency
           (iotpipe bench mqtt --help for its flags)
  e2e      the whole pipeline end to end: capacity with and without
           rules against ingest alone, latencies, CPU per event, PEWMA
           detection, every acknowledged event once; writes
           benchmarks/results/REPORT.md (iotpipe bench e2e --help)
  shadows  device shadow updates per second through the processor
           runtime over an embedded log of its own
           (iotpipe bench shadows --help for its flags)

Examples:
  iotpipe bench mqtt --addr 127.0.0.1:1883 --conns 100 --qos 1 --duration 10s
  iotpipe bench shadows --updates 200000 --things 1000
  iotpipe bench e2e --parts rules,latency --measure 5s
`

// benchMain runs `iotpipe bench`; args are the arguments after "bench".
// It returns the process exit status.
func benchMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, benchUsage)
		return 2
	}
	switch args[0] {
	case "mqtt":
		return mqttload.Command(ctx, args[1:], stdout, stderr)
	case "shadows":
		return shadowload.Command(ctx, args[1:], stdout, stderr)
	case "e2e":
		return benchE2EMain(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, benchUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "iotpipe bench: unknown target %q\n\n%s", args[0], benchUsage)
		return 2
	}
}
