package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotpipe/iotpipe/ingest"
	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/lastseen"
	"github.com/iotpipe/iotpipe/processors/rules"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/iotpipe/iotpipe/processors/shadow/document"
	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
	"github.com/iotpipe/iotpipe/sinks/clickhouse"
	"github.com/iotpipe/iotpipe/sinks/clickhouse/embedded"
	kafkaaction "github.com/iotpipe/iotpipe/sinks/kafka"
	"github.com/iotpipe/iotpipe/sinks/republish"
	"github.com/iotpipe/iotpipe/sinks/webhook"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
)

// roles says which parts one process runs.
type roles struct {
	ingest, process, sink bool
}

const roleHelp = `Usage: iotpipe %s [flags]

%s

Flags (precedence: defaults < --config file < IOTPIPE_* environment < flags):
`

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return serve(ctx, "run", "Runs the whole pipeline in one process: the embedded log (unless --kafka),\nthe MQTT front, the processors, the sinks (the embedded ClickHouse unless\n--clickhouse, the action executors) and the HTTP API.", roles{ingest: true, process: true, sink: true}, args, stderr)
}

func ingestMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return serve(ctx, "ingest", "Runs the MQTT/HTTP front only, writing to the log (the embedded log unless\n--kafka; other processes reach it on 127.0.0.1:--kafka-port).", roles{ingest: true}, args, stderr)
}

func processMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return serve(ctx, "process", "Runs the partition-task processors only (last-seen, shadows, rules), in the\nconsumer group iotpipe-processors, against --kafka (default 127.0.0.1:9092).", roles{process: true}, args, stderr)
}

func sinkMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return serve(ctx, "sink", "Runs the sinks only: ClickHouse (the embedded server unless --clickhouse) and\nthe action executors (republish, command, webhook, kafka), each its own\nconsumer group, against --kafka (default 127.0.0.1:9092).", roles{sink: true}, args, stderr)
}

func serve(ctx context.Context, name, what string, r roles, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, roleHelp, name, what)
		fs.PrintDefaults()
	}
	cfg, err := loadConfig(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "iotpipe:", err)
		return 2
	}
	if !r.ingest && cfg.Kafka == "" {
		cfg.Kafka = fmt.Sprintf("127.0.0.1:%d", cfg.KafkaPort)
	}
	log := cfg.logger()
	slog.SetDefault(log)
	if err := (&node{cfg: cfg, roles: r, log: log}).run(ctx); err != nil {
		log.Error("iotpipe "+name+" stopped", "err", err)
		return 1
	}
	return 0
}

// node is one running iotpipe process: the parts its roles ask for, the
// HTTP mux and metrics registry they share, and the goroutines to wait
// for on shutdown.
type node struct {
	cfg   config
	roles roles
	log   *slog.Logger
	ready atomic.Bool

	lg   *eventlog.Log
	reg  *prometheus.Registry
	mux  *http.ServeMux
	wg   sync.WaitGroup
	errc chan error
	// stops run in reverse order at shutdown, after the goroutines ended.
	stops []func()
}

// goRun runs fn in a goroutine the node waits for; its error stops the node.
func (n *node) goRun(fn func() error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := fn(); err != nil {
			select {
			case n.errc <- err:
			default:
			}
		}
	}()
}

func (n *node) onStop(f func()) { n.stops = append(n.stops, f) }

func (n *node) run(ctx context.Context) error {
	cfg := n.cfg
	if n.roles.ingest && cfg.Dev {
		n.log.Warn("**********************************************************************")
		n.log.Warn("--dev: ANONYMOUS DEVICES ALLOWED. Anyone who reaches " + cfg.MQTTAddr + " can connect,")
		n.log.Warn("publish and subscribe to any topic, and use any shadow. Never expose this to a network.")
		n.log.Warn("**********************************************************************")
	} else if n.roles.ingest {
		n.log.Warn("identity is not configured yet: every device connection will be refused; pass --dev to allow anonymous devices")
	}
	n.reg = prometheus.NewRegistry()
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.mux = http.NewServeMux()
	n.errc = make(chan error, 16)

	lg, err := eventlog.Open(ctx, eventlog.Options{
		Brokers: cfg.brokers(), DataDir: cfg.path("kafka"), Port: cfg.KafkaPort, SyncWrites: cfg.SyncWrites,
		Partitions: int32(cfg.Partitions), RetentionTime: cfg.Retention, RetentionBytes: cfg.RetentionBytes, Logger: n.log,
	})
	if err != nil {
		return err
	}
	n.lg = lg
	n.onStop(lg.Close)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer func() {
		for i := len(n.stops) - 1; i >= 0; i-- {
			n.stops[i]()
		}
	}()
	if n.roles.ingest {
		if err := n.startIngest(ctx); err != nil {
			return err
		}
	}
	if n.roles.process {
		if err := n.startProcessors(ctx); err != nil {
			return err
		}
	}
	if n.roles.sink {
		if err := n.startSinks(ctx); err != nil {
			return err
		}
	}
	hs, addr, err := n.serveHTTP()
	if err != nil {
		return err
	}
	n.ready.Store(true)
	n.log.Info("iotpipe ready", "http", addr, "kafka", lg.Brokers(), "ingest", n.roles.ingest, "process", n.roles.process, "sink", n.roles.sink)

	var runErr error
	select {
	case <-ctx.Done():
		n.log.Info("shutting down")
	case runErr = <-n.errc:
	}
	n.ready.Store(false)
	cancel()
	sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
	defer c()
	_ = hs.Shutdown(sctx)
	n.wg.Wait()
	return runErr
}

func (n *node) startIngest(ctx context.Context) error {
	cfg, lg := n.cfg, n.lg
	prod, err := lg.Client(ingest.ProducerOpts()...)
	if err != nil {
		return err
	}
	n.onStop(prod.Close)
	srv, err := ingest.New(prod, ingest.Options{
		MQTTAddr: cfg.MQTTAddr, Dev: cfg.Dev, Topics: lg.Topics(), MaxInFlight: cfg.MaxInFlight,
		MaxPayload: cfg.MaxPayload, Node: cfg.Node, Logger: n.log, SessionDir: cfg.path("mqtt"),
		ConnectTimeout: cfg.MQTTConnect, MaxConnections: cfg.MQTTMaxConns, MaxSessionExpiry: cfg.MQTTSession,
		ClientWriteQueue: cfg.MQTTQueue, MaxQueuedMessages: cfg.MQTTMaxQueued, LogWriteError: lg.WriteError,
	})
	if err != nil {
		return err
	}
	n.reg.MustRegister(srv.Collectors()...)
	if err := srv.Start(); err != nil {
		return err
	}
	n.onStop(func() {
		srv.Close()
		fctx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		if err := prod.Flush(fctx); err != nil {
			n.log.Warn("flush producer", "err", err)
		}
	})
	out, err := lg.Client(kgo.ConsumeTopics(lg.Topics().Outbound), kgo.ConsumerGroup(srv.OutboundGroup()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		return err
	}
	n.onStop(out.Close)
	n.goRun(func() error { return srv.DeliverOutbound(ctx, out) })
	n.mux.HandleFunc("POST /topics/{topic...}", srv.HTTPPublish)
	n.mux.HandleFunc("GET /things/{thing}/shadow", srv.ShadowHTTP)
	n.mux.HandleFunc("POST /things/{thing}/shadow", srv.ShadowHTTP)
	n.mux.HandleFunc("DELETE /things/{thing}/shadow", srv.ShadowHTTP)
	return nil
}

// stateReader defers to the runner once it exists (the rules processor
// is built before the runner that will hold the shadow state it reads).
type stateReader struct {
	r atomic.Pointer[processors.Runner]
}

// Read reads the runner's state (nothing found until the runner exists).
func (s *stateReader) Read(processor string, key []byte) ([]byte, bool, error) {
	if r := s.r.Load(); r != nil {
		return r.Read(processor, key)
	}
	return nil, false, nil
}

func (n *node) startProcessors(ctx context.Context) error {
	cfg, lg := n.cfg, n.lg
	if err := os.MkdirAll(cfg.RulesDir, 0o755); err != nil {
		return fmt.Errorf("rules dir: %w", err)
	}
	state := &stateReader{}
	rp := rules.New(rules.Options{Topics: lg.Topics(), Shadow: shadow.NewView(state), Logger: n.log})
	if err := rp.Reload(cfg.RulesDir); err != nil {
		n.log.Warn("rules: some files did not load; their previous versions (if any) keep running", "dir", cfg.RulesDir, "err", err)
	}
	n.goRun(func() error { rp.Watch(ctx, cfg.RulesDir, time.Second); return nil })
	n.reg.MustRegister(rp.Collectors()...)
	n.mux.Handle("GET /api/rules", rp.Handler())

	procs := []processors.Processor{
		lastseen.Processor{},
		shadow.New(shadow.Options{Topics: lg.Topics(), AllowOtherThings: cfg.Dev, RateLimit: cfg.ShadowRate,
			Limits: document.Limits{MaxSize: cfg.ShadowMaxSize, MaxDepth: cfg.ShadowMaxDepth}}),
		rp,
	}
	runner, err := processors.NewRunner(lg, procs, processors.RunnerOptions{
		Topics: lg.Topics(), StateDir: cfg.path("state"), Logger: n.log,
	})
	if err != nil {
		return err
	}
	state.r.Store(runner)
	n.onStop(func() { runner.Close() })
	n.reg.MustRegister(runner.Collectors()...)
	n.mux.Handle("GET /api/things/{name}", lastseen.Handler(runner))
	n.goRun(func() error { return runner.Run(ctx) })
	return nil
}

// startClickHouse starts the ClickHouse sink: against --clickhouse, or
// the embedded server it starts first (a supervised child process).
func (n *node) startClickHouse(ctx context.Context) error {
	cfg, lg := n.cfg, n.lg
	if cfg.ClickHouse == "off" {
		n.log.Warn("--clickhouse off: no telemetry is stored in ClickHouse")
		return nil
	}
	dsn, httpDSN := cfg.ClickHouse, ""
	if dsn == "" {
		lib, err := embedded.LibPath()
		if err != nil {
			return err
		}
		srv, err := embedded.Start(ctx, embedded.Options{
			LibPath: lib, DataDir: cfg.path("clickhouse"), TCPPort: cfg.CHTCPPort, HTTPPort: cfg.CHHTTPPort, Logger: n.log,
		})
		if err != nil {
			return err
		}
		n.onStop(func() { srv.Stop() })
		dsn, httpDSN = srv.DSN(), srv.HTTPURL()+"/default"
	}
	metrics, err := clickhouse.NewPrometheusMetrics(n.reg)
	if err != nil {
		return err
	}
	sink, err := clickhouse.Start(ctx, clickhouse.Options{
		Brokers: lg.Brokers(), DSN: dsn, HTTPDSN: httpDSN, Topics: lg.Topics(),
		Schema: ddl.Options{TTLDays: cfg.CHTTLDays}, Metrics: metrics, Logger: n.log,
	})
	if err != nil {
		return err
	}
	n.onStop(func() { sink.Stop() })
	conn, err := clickhouse.Open(ctx, dsn)
	if err != nil {
		return err
	}
	n.onStop(func() { conn.Close() })
	n.mux.Handle("POST /api/sql", clickhouse.SQLHandler(conn, clickhouse.SQLHandlerOptions{}))
	return nil
}

func (n *node) startSinks(ctx context.Context) error {
	if err := n.startClickHouse(ctx); err != nil {
		return err
	}
	lg := n.lg
	rep, err := republish.New(republish.Options{Brokers: lg.Brokers(), Topics: lg.Topics(), Logger: n.log})
	if err != nil {
		return err
	}
	if err := rep.Start(ctx); err != nil {
		return err
	}
	n.onStop(func() { rep.Close() })
	n.goRun(func() error { return rep.Run(ctx) })
	n.reg.MustRegister(rep.Collectors()...)
	n.mux.Handle("GET /api/commands/{id...}", rep.Handler())

	ka, err := kafkaaction.New(kafkaaction.Options{Brokers: lg.Brokers(), Topics: lg.Topics(), Logger: n.log})
	if err != nil {
		return err
	}
	if err := ka.Start(ctx); err != nil {
		return err
	}
	n.onStop(func() { ka.Close() })
	n.goRun(func() error { return ka.Run(ctx) })
	n.reg.MustRegister(ka.Collectors()...)

	wh, err := webhook.New(webhook.Options{Brokers: lg.Brokers(), Secret: []byte(n.cfg.WebhookSecret), Logger: n.log,
		ActionsTopic: lg.Topics().Actions, DLQTopic: lg.Topics().DLQ})
	if err != nil {
		return err
	}
	if err := wh.Start(ctx); err != nil {
		return err
	}
	n.onStop(func() {
		sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
		defer c()
		_ = wh.Stop(sctx)
	})
	n.reg.MustRegister(wh.Collectors()...)
	return nil
}

func (n *node) serveHTTP() (*http.Server, string, error) {
	mux := n.mux
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !n.ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	if n.cfg.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	ln, err := net.Listen("tcp", n.cfg.HTTPAddr)
	if err != nil {
		return nil, "", fmt.Errorf("http listen %s: %w", n.cfg.HTTPAddr, err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.errc <- err
		}
	}()
	return hs, ln.Addr().String(), nil
}
