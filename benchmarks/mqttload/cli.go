package mqttload

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// Usage is the help text of the mqtt load command.
const Usage = `Usage: iotpipe bench mqtt [flags]

Publish MQTT 3.1.1 load over real TCP connections and measure the broker:
messages sent and acknowledged per second and, at QoS 1, the latency from
PUBLISH to PUBACK (p50/p90/p99/p99.9/max). The generator speaks the raw
protocol with zero allocations per message, so one process can push a
broker doing several hundred thousand messages per second.

Every connection publishes a JSON payload of --size bytes, e.g.
  {"temperature":21.37,"seq":   42,"conn":7,"pad":"xxxx...x"}
to its own topic (--topic, {conn} = connection index, {client} = client id).
At QoS 1 each connection keeps up to --window messages in flight. With
--rate the total rate is spread evenly over the connections (use it for
latency at a fixed load, e.g. --rate 50000); without it the load is as fast
as the broker acknowledges. Progress is printed to stderr every second.

Examples:
  iotpipe bench mqtt --addr 127.0.0.1:1883 --conns 100 --qos 1 --duration 10s
  iotpipe bench mqtt --conns 1000 --qos 0 --duration 10s --json
  iotpipe bench mqtt --conns 100 --qos 1 --rate 50000 --warmup 2s --duration 10s
  iotpipe bench mqtt --qos 1 --count 100000 --subscribe 'bench/#'
  iotpipe bench mqtt --addr 127.0.0.1:8883 --cafile ca.pem --cert dev.crt --key dev.key \
    --topic 'dt/{client}/telemetry'

Exit status: 0 on success, 1 when the run failed or a connection broke or
left messages unacknowledged, 2 on bad usage.

Flags:
`

// Command runs the mqtt load command with args (the flags after
// "bench mqtt"), writing the summary to stdout and progress and errors to
// stderr. It returns the process exit status.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("iotpipe bench mqtt", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), Usage)
		fs.PrintDefaults()
	}
	var (
		cfg     Config
		qos     uint
		subQoS  uint
		asJSON  bool
		quiet   bool
		timeout time.Duration
		tlsf    tlsFiles
	)
	fs.StringVar(&cfg.Addr, "addr", DefaultAddr, "broker `host:port`")
	fs.IntVar(&cfg.Conns, "conns", DefaultConns, "publishing connections")
	fs.UintVar(&qos, "qos", 1, "publish QoS, 0 or 1")
	fs.IntVar(&cfg.Size, "size", DefaultSize, fmt.Sprintf("payload size in bytes (JSON, at least %d)", MinSize))
	fs.StringVar(&cfg.Topic, "topic", DefaultTopic, "topic `pattern`: {conn} is the connection index, {client} the client id")
	fs.StringVar(&cfg.ClientPrefix, "client-prefix", DefaultClientPrefix, "client id `prefix` (followed by the connection index)")
	fs.StringVar(&cfg.Username, "username", "", "MQTT user name (none by default)")
	fs.StringVar(&cfg.Password, "password", "", "MQTT password, sent only with --username")
	fs.StringVar(&tlsf.ca, "cafile", "", "connect over TLS, trusting the CA certificate(s) in this PEM `file`")
	fs.StringVar(&tlsf.cert, "cert", "", "client certificate PEM `file` sent over TLS (with --key)")
	fs.StringVar(&tlsf.key, "key", "", "private key PEM `file` of --cert")
	fs.IntVar(&cfg.Window, "window", DefaultWindow, "QoS 1 messages in flight per connection")
	fs.DurationVar(&cfg.Duration, "duration", 0, "measurement window (default 10s unless --count is set)")
	fs.Int64Var(&cfg.Count, "count", 0, "send exactly this many messages in total instead of running for --duration")
	fs.Float64Var(&cfg.Rate, "rate", 0, "target total publish rate in msg/s (0: as fast as possible)")
	fs.DurationVar(&cfg.Warmup, "warmup", 0, "load before the measurement window, not counted (duration runs only)")
	fs.DurationVar(&cfg.Drain, "drain", DefaultDrain, "how long to wait for outstanding PUBACKs after sending stops")
	fs.DurationVar(&cfg.Keepalive, "keepalive", DefaultKeepalive, "MQTT keepalive sent in CONNECT")
	fs.StringVar(&cfg.Subscribe, "subscribe", "", "also run one subscriber on this topic `filter` (e.g. 'bench/#') and count what it receives")
	fs.UintVar(&subQoS, "subscribe-qos", 0, "QoS requested by the --subscribe subscriber, 0 or 1")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON on stdout instead of the summary")
	fs.BoolVar(&quiet, "quiet", false, "no progress lines on stderr")
	fs.DurationVar(&timeout, "timeout", 0, "abort the whole run after this long (0: no limit)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "iotpipe bench mqtt: unexpected arguments %q; see --help\n", fs.Args())
		return 2
	}
	if qos > 1 || subQoS > 1 {
		fmt.Fprintln(stderr, "iotpipe bench mqtt: --qos and --subscribe-qos must be 0 or 1")
		return 2
	}
	cfg.QoS, cfg.SubscribeQoS = byte(qos), byte(subQoS)
	var err error
	if cfg.TLS, err = tlsf.config(); err != nil {
		fmt.Fprintf(stderr, "iotpipe bench mqtt: %v\n", err)
		return 2
	}
	if cfg.Duration == 0 && cfg.Count == 0 {
		cfg.Duration = 10 * time.Second
	}
	if !quiet {
		cfg.Progress = func(p Progress) { fmt.Fprintln(stderr, FormatProgress(p, cfg.QoS, cfg.Subscribe != "")) }
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	res, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "iotpipe bench mqtt: %v\n", err)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(stderr, "iotpipe bench mqtt: writing JSON: %v\n", err)
			return 1
		}
	} else {
		fmt.Fprint(stdout, FormatResult(res))
	}
	if res.Errors > 0 || res.Unacked > 0 {
		fmt.Fprintf(stderr, "iotpipe bench mqtt: %d connection(s) failed, %d message(s) unacknowledged\n", res.Errors, res.Unacked)
		return 1
	}
	return 0
}

// FormatProgress renders one progress line.
func FormatProgress(p Progress, qos byte, sub bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6.1fs %-7s sent %s/s", p.Elapsed.Seconds(), p.Phase, humanRate(p.SentRate))
	if qos > 0 {
		fmt.Fprintf(&b, "  acked %s/s  in flight %d", humanRate(p.AckedRate), p.Sent-p.Acked)
	}
	if sub {
		fmt.Fprintf(&b, "  received %s/s", humanRate(p.ReceivedRate))
	}
	fmt.Fprintf(&b, "  total sent %d", p.Sent)
	if p.Failed > 0 {
		fmt.Fprintf(&b, "  FAILED connections %d", p.Failed)
	}
	return b.String()
}

// FormatResult renders a readable multi-line summary of r.
func FormatResult(r Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "MQTT load: %s, %d connections, QoS %d, %d-byte payload", r.Addr, r.Conns, r.QoS, r.Size)
	if r.QoS > 0 {
		fmt.Fprintf(&b, ", window %d", r.Window)
	}
	if r.Rate > 0 {
		fmt.Fprintf(&b, ", target %s msg/s", humanRate(r.Rate))
	}
	fmt.Fprintf(&b, "\n  measured    %s", r.Duration.Round(time.Millisecond))
	if r.Warmup > 0 {
		fmt.Fprintf(&b, " after %s warm-up", r.Warmup)
	}
	if r.Interrupted {
		b.WriteString(" (interrupted)")
	}
	fmt.Fprintf(&b, "\n  sent        %d  (%s msg/s)\n", r.Sent, humanRate(r.SentPerSec))
	if r.QoS > 0 {
		fmt.Fprintf(&b, "  acked       %d  (%s msg/s)\n", r.Acked, humanRate(r.AckedPerSec))
		l := r.Latency
		fmt.Fprintf(&b, "  latency     p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (publish→PUBACK, %d samples)\n",
			fmtDur(l.P50), fmtDur(l.P90), fmtDur(l.P99), fmtDur(l.P999), fmtDur(l.Max), l.Count)
	}
	if r.TotalReceived > 0 || r.Received > 0 {
		fmt.Fprintf(&b, "  received    %d  (%s msg/s) by the subscriber; %d in total, delivered at %s msg/s from first to last\n",
			r.Received, humanRate(r.ReceivedPerSec), r.TotalReceived, humanRate(r.DeliveredPerSec))
	}
	fmt.Fprintf(&b, "  whole run   sent %d", r.TotalSent)
	if r.QoS > 0 {
		fmt.Fprintf(&b, ", acked %d, unacked %d", r.TotalAcked, r.Unacked)
		if r.OutOfOrder > 0 {
			fmt.Fprintf(&b, ", %d PUBACKs out of order", r.OutOfOrder)
		}
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "  errors      %d\n", r.Errors)
	for _, e := range r.ErrorSamples {
		fmt.Fprintf(&b, "    %s\n", e)
	}
	return b.String()
}

func humanRate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1fk", v/1e3)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%dµs", d/time.Microsecond)
	}
}
