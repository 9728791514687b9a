package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/iotpipe/iotpipe/ingest"
	"github.com/iotpipe/iotpipe/ingest/apiauth"
	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/ingest/policy"
	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/lastseen"
	"github.com/iotpipe/iotpipe/processors/replies"
	"github.com/iotpipe/iotpipe/processors/rules"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/iotpipe/iotpipe/processors/shadow/document"
	"github.com/iotpipe/iotpipe/replay"
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
	cfg, err := loadConfig(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, roleHelp, name, what)
		fs.SetOutput(stderr)
		fs.PrintDefaults()
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "iotpipe %s: %v (iotpipe %s --help lists the flags)\n", name, err, name)
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "iotpipe %s: %v\n", name, err)
		return 2
	}
	if !r.ingest && cfg.Kafka == "" {
		cfg.Kafka = fmt.Sprintf("127.0.0.1:%d", cfg.KafkaPort)
	}
	log := cfg.logger()
	slog.SetDefault(log)
	if err := (&node{cfg: cfg, roles: r, log: log}).run(ctx); err != nil {
		return 1 // run logged it
	}
	return 0
}

// node is one running iotpipe process: the parts its roles ask for, the
// HTTP mux and metrics registry they share, and the lifecycle that
// starts and stops them in order.
type node struct {
	cfg   config
	roles roles
	log   *slog.Logger
	ready atomic.Bool

	lg  *eventlog.Log
	reg *prometheus.Registry
	mux *http.ServeMux
	lc  *lifecycle
	// registry is the identity registry's view, ca iotpipe's CA, auth
	// the HTTP API's authenticator (see startIdentity).
	registry *registry.Registry
	ca       *pki.CA
	auth     *apiauth.Authenticator
	// httpAddr is the HTTP listener's address once taken.
	httpAddr string
	// sql is this node's POST /api/sql handler (nil without ClickHouse)
	// and rules its rules processor (nil without the process role): the
	// dashboard reads through them.
	sql   http.Handler
	rules *rules.Processor
	// waits are what must hold, besides having started, for /readyz to
	// say ready: a part's consumer group joined, say.
	waits []readyWait
}

// readyWait is a condition /readyz waits for.
type readyWait struct {
	what string
	ok   func() bool
}

// waitReady adds a condition /readyz waits for.
func (n *node) waitReady(what string, ok func() bool) { n.waits = append(n.waits, readyWait{what, ok}) }

// run starts the node, serves until ctx ends or a part fails, and stops
// it; it logs every error once and returns them. Start-up goes from the
// back of the pipeline to the front (the log, ClickHouse, sinks,
// processors, ingest, then the listeners), so a part only starts once
// what it writes to runs; shutdown goes from the front to the back (see
// phase), within --drain-timeout. A start-up failure stops what was
// started in the same order.
func (n *node) run(ctx context.Context) error {
	n.lc = newLifecycle(n.log)
	n.reg = prometheus.NewRegistry()
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.mux = http.NewServeMux()
	err := n.start(ctx)
	if err != nil {
		n.log.Error("iotpipe could not start; stopping what did", "err", err)
	} else {
		n.ready.Store(true)
		n.log.Info("iotpipe ready", "http", n.httpAddr, "kafka", n.lg.Brokers(), "ingest", n.roles.ingest, "process", n.roles.process, "sink", n.roles.sink)
		select {
		case <-ctx.Done():
			n.log.Info("shutting down", "drain_timeout", n.cfg.DrainTimeout)
		case err = <-n.lc.failed:
			n.log.Error("a part of iotpipe failed; shutting down", "err", err, "drain_timeout", n.cfg.DrainTimeout)
		}
	}
	n.ready.Store(false)
	if serr := n.lc.stop(n.cfg.DrainTimeout); serr != nil {
		n.log.Error("shutdown did not finish cleanly", "err", serr)
		return errors.Join(err, serr)
	}
	if err == nil {
		n.log.Info("iotpipe stopped")
	}
	return err
}

// start opens the log and starts every part the roles ask for.
func (n *node) start(ctx context.Context) error {
	cfg := n.cfg
	if n.roles.ingest && cfg.Dev {
		n.log.Warn("**********************************************************************")
		n.log.Warn("--dev: ANONYMOUS DEVICES ALLOWED. Anyone who reaches the MQTT listeners can connect,")
		n.log.Warn("publish and subscribe to any topic, and use any shadow; policies are not checked. Never expose this to a network.")
		n.log.Warn("**********************************************************************")
	}
	// The HTTP port is taken first: a busy port fails before anything
	// else starts.
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return listenErr(err, "HTTP", cfg.HTTPAddr, "--http-addr")
	}
	n.httpAddr = ln.Addr().String()
	n.lc.onStop(acceptPhase, "http listener", func(context.Context) error { ln.Close(); return nil })
	creds, err := cfg.kafkaCredentials()
	if err != nil {
		return fmt.Errorf("%w (pass --kafka-credentials with the log's credentials file, e.g. the ingest node's <data-dir>/kafka/%s)", err, eventlog.CredentialsFile)
	}
	lg, err := eventlog.Open(ctx, eventlog.Options{
		Brokers: cfg.brokers(), Credentials: creds, DataDir: cfg.path("kafka"), Port: cfg.KafkaPort, SyncWrites: cfg.SyncWrites,
		Partitions: int32(cfg.Partitions), RetentionTime: cfg.Retention, RetentionBytes: cfg.RetentionBytes, Logger: n.log,
	})
	if err != nil {
		return err
	}
	n.lg = lg
	n.lc.onStop(storePhase, "embedded log", func(context.Context) error { lg.Close(); return nil })
	if err := n.startIdentity(ctx); err != nil {
		return err
	}
	// Reading the log's history (the dashboard's events and replay
	// views) works on any node: it only reads.
	hist := replay.HTTPOptions{Log: replay.Log{Client: lg.Client, Topic: lg.Topics().Events}, Logger: n.log}
	n.route("GET /api/events", apiauth.ActionRead, apiauth.Fixed("api/events"), replay.EventsHandler(hist))
	n.route("POST /api/replay", apiauth.ActionRead, apiauth.Fixed("api/replay"), replay.ReplayHandler(hist))
	if n.roles.sink {
		if err := n.startSinks(ctx); err != nil {
			return err
		}
	}
	if n.roles.process {
		if err := n.startProcessors(); err != nil {
			return err
		}
	}
	if n.roles.ingest {
		if err := n.startIngest(); err != nil {
			return err
		}
	}
	n.startDashboard()
	var tlsConf *tls.Config
	if cfg.HTTPTLS {
		c, err := n.serverCertificate()
		if err != nil {
			return fmt.Errorf("--http-tls: %w", err)
		}
		tlsConf = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{c}}
	}
	n.serveHTTP(ln, tlsConf)
	return nil
}

// listenErr says which address of which part is taken and what to do.
func listenErr(err error, what, addr, flag string) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s address %s is in use: pass %s with another address, or stop the other server", what, addr, flag)
	}
	return fmt.Errorf("%s listen on %s (%s): %w", what, addr, flag, err)
}

func (n *node) startIngest() error {
	cfg, lg := n.cfg, n.lg
	prod, err := lg.Client(ingest.ProducerOpts()...)
	if err != nil {
		return err
	}
	// Stops after the listeners: flushes what clients were promised.
	n.lc.onStop(ingestPhase, "ingest producer", func(ctx context.Context) error {
		defer prod.Close()
		if err := prod.Flush(ctx); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
		return nil
	})
	iopts := ingest.Options{
		MQTTAddr: cfg.MQTTAddr, Dev: cfg.Dev, Topics: lg.Topics(), MaxInFlight: cfg.MaxInFlight,
		MaxPayload: cfg.MaxPayload, Node: cfg.Node, Logger: n.log, SessionDir: cfg.path("mqtt"),
		ConnectTimeout: cfg.MQTTConnect, MaxConnections: cfg.MQTTMaxConns, MaxSessionExpiry: cfg.MQTTSession,
		ClientWriteQueue: cfg.MQTTQueue, MaxQueuedMessages: cfg.MQTTMaxQueued, LogWriteError: lg.WriteError,
		HTTPPrincipal: httpPrincipal,
	}
	if err := n.identityOptions(&iopts); err != nil {
		return err
	}
	srv, err := ingest.New(prod, iopts)
	if err != nil {
		return err
	}
	n.reg.MustRegister(srv.Collectors()...)
	// Ready once the outbound consumer has its partitions: answers to
	// HTTP shadow requests come through it.
	var outAssigned atomic.Bool
	out, err := lg.Client(kgo.ConsumeTopics(lg.Topics().Outbound), kgo.ConsumerGroup(srv.OutboundGroup()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(), // DeliverOutbound commits what it routed
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(500*time.Millisecond),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) { outAssigned.Store(true) }))
	if err != nil {
		return err
	}
	n.waitReady("the outbound consumer is not assigned yet", outAssigned.Load)
	n.lc.onStop(acceptPhase, "outbound consumer", func(context.Context) error { out.Close(); return nil })
	if err := srv.Start(); err != nil {
		if le := (*ingest.ListenError)(nil); errors.As(err, &le) {
			return listenErr(le.Err, listenerNames[le.Listener][0], le.Addr, listenerNames[le.Listener][1])
		}
		return err
	}
	// Outbound delivery stops before the broker closes (it routes into
	// the broker's sessions); closing the broker closes its listener and
	// disconnects every client, so nothing is acknowledged after.
	n.lc.run(acceptPhase, "mqtt", func(ctx context.Context) error {
		err := srv.DeliverOutbound(ctx, out)
		return errors.Join(err, srv.Close())
	})
	n.route("POST /topics/{topic...}", policy.ActionPublish, pathResource("topic/", "topic"), http.HandlerFunc(srv.HTTPPublish))
	n.route("GET /things/{thing}/shadow", policy.ActionGetThingShadow, shadowResource, http.HandlerFunc(srv.ShadowHTTP))
	n.route("POST /things/{thing}/shadow", policy.ActionUpdateThingShadow, shadowResource, http.HandlerFunc(srv.ShadowHTTP))
	n.route("DELETE /things/{thing}/shadow", policy.ActionDeleteThingShadow, shadowResource, http.HandlerFunc(srv.ShadowHTTP))
	return nil
}

func (n *node) startProcessors() error {
	cfg, lg := n.cfg, n.lg
	if err := os.MkdirAll(cfg.RulesDir, 0o755); err != nil {
		return fmt.Errorf("rules dir: %w", err)
	}
	// get_thing_shadow(): shadows of the event's partition are read in
	// its transaction; the others from a view of the shadows topic.
	view := shadow.NewTopicView(lg, lg.Topics().Shadows, n.log)
	n.lc.run(processPhase, "shadow view", view.Run)
	rp := rules.New(rules.Options{Topics: lg.Topics(), Shadow: shadow.NewReader(view), LastGoodDir: cfg.path("rules-last-good"), MaxEventSkew: cfg.MaxEventSkew, Logger: n.log})
	if err := rp.Reload(cfg.RulesDir); err != nil {
		n.log.Warn("rules: some files did not load; their previous versions (if any) keep running", "dir", cfg.RulesDir, "err", err)
	}
	n.reg.MustRegister(rp.Collectors()...)
	n.route("GET /api/rules", apiauth.ActionRead, apiauth.Fixed("api/rules"), rp.Handler())
	n.rules = rp

	procs := []processors.Processor{
		lastseen.Processor{},
		shadow.New(shadow.Options{Topics: lg.Topics(), RateLimit: cfg.ShadowRate,
			Limits: document.Limits{MaxSize: cfg.ShadowMaxSize, MaxDepth: cfg.ShadowMaxDepth}}),
		rp,
		// Copies the command replies to their own topic: the command
		// status follows it instead of the events.
		replies.Processor{Topic: lg.Topics().Replies},
	}
	ropts := processors.RunnerOptions{Topics: lg.Topics(), StateDir: cfg.path("state"), Logger: n.log}
	if err := setFailpoint(&ropts, lg.Topics(), n.log); err != nil {
		return err
	}
	runner, err := processors.NewRunner(lg, procs, ropts)
	if err != nil {
		return err
	}
	// The state store closes once the runner's goroutines all returned.
	n.lc.onStop(processPhase, "state store", func(context.Context) error { return runner.Close() })
	n.reg.MustRegister(runner.Collectors()...)
	n.route("GET /api/things/{name}", apiauth.ActionRead, apiauth.Fixed("api/things"), lastseen.Handler(runner))
	// iotpipe rebuild --running: the partitions rebuilt while the node runs.
	lr := replay.RebuildHandler(n.lc.ctx(processPhase), runner, n.liveRebuildOptions(rp), n.log)
	n.route("POST /api/rebuild", apiauth.ActionAdmin, apiauth.Fixed("api/rebuild"), lr)
	n.route("GET /api/rebuild", apiauth.ActionRead, apiauth.Fixed("api/rebuild"), lr)
	n.lc.run(processPhase, "processors", runner.Run)
	n.waitReady("the processors' partitions are not assigned yet", runner.Ready)
	n.lc.run(processPhase, "rules watcher", func(ctx context.Context) error { return rp.Watch(ctx, cfg.RulesDir, time.Second) })
	return nil
}

// startClickHouse starts the ClickHouse sink: against --clickhouse, or
// the embedded server it starts first (a supervised child process that
// stops after the sink).
func (n *node) startClickHouse(ctx context.Context) error {
	cfg, lg := n.cfg, n.lg
	if cfg.ClickHouse == "off" {
		n.log.Warn("--clickhouse off: no telemetry is stored in ClickHouse")
		n.route("POST /api/sql", apiauth.ActionQuery, apiauth.Fixed("api/sql"), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, `{"code":503,"message":"no ClickHouse: iotpipe runs with --clickhouse off","timestamp":%d}`+"\n", time.Now().Unix())
		}))
		return nil
	}
	dsn, httpDSN, queryDSN := cfg.ClickHouse, "", cfg.CHQueryDSN
	if dsn == "" {
		// After a crash, the killed process's server may still be
		// exiting, its ports still taken.
		if err := embedded.WaitPrevious(ctx, cfg.path("clickhouse"), 30*time.Second, n.log); err != nil {
			return err
		}
		if err := portsFree(chPort{cfg.CHTCPPort, "--clickhouse-tcp-port"}, chPort{cfg.CHHTTPPort, "--clickhouse-http-port"}); err != nil {
			return err
		}
		lib, err := embedded.LibPath()
		if err != nil {
			return err
		}
		// The server keeps the store phase's context: it runs until the
		// sink stopped.
		srv, err := embedded.Start(n.lc.ctx(storePhase), embedded.Options{
			LibPath: lib, DataDir: cfg.path("clickhouse"), TCPPort: cfg.CHTCPPort, HTTPPort: cfg.CHHTTPPort, Logger: n.log,
		})
		if err != nil {
			return err
		}
		n.lc.run(storePhase, "embedded clickhouse", until(srv.Stop))
		dsn, httpDSN, queryDSN = srv.DSN(), srv.HTTPDSN(), srv.QueryDSN()
	}
	metrics, err := clickhouse.NewPrometheusMetrics(n.reg)
	if err != nil {
		return err
	}
	sink, err := clickhouse.Start(n.lc.ctx(sinkPhase), clickhouse.Options{
		Kafka: lg, DSN: dsn, HTTPDSN: httpDSN, Topics: lg.Topics(),
		Schema: ddl.Options{TTLDays: cfg.CHTTLDays}, Metrics: metrics, Logger: n.log,
	})
	if err != nil {
		return err
	}
	n.lc.run(sinkPhase, "clickhouse sink", func(ctx context.Context) error {
		select {
		case <-ctx.Done():
		case <-sink.Done():
		}
		return sink.Stop()
	})
	sqlHandler, closeSQL := clickhouse.QueryEndpoint(ctx, clickhouse.QueryEndpointOptions{AdminDSN: dsn, QueryDSN: queryDSN, Logger: n.log})
	n.lc.onStop(sinkPhase, "clickhouse sql connection", func(context.Context) error { closeSQL(); return nil })
	n.route("POST /api/sql", apiauth.ActionQuery, apiauth.Fixed("api/sql"), sqlHandler)
	n.sql = sqlHandler
	return nil
}

// chPort is a port of the embedded ClickHouse and the flag that sets it.
type chPort struct {
	port int
	flag string
}

// portsFree checks that each port is free on 127.0.0.1, so a busy one is
// reported as such rather than as a child process that did not start.
func portsFree(ports ...chPort) error {
	for _, p := range ports {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)))
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("ClickHouse port %d is in use: pass %s with another port, or stop the other server", p.port, p.flag)
			}
			return fmt.Errorf("ClickHouse port %d (%s): %w", p.port, p.flag, err)
		}
		ln.Close()
	}
	return nil
}

// executor is the New/Start/Run/Close shape of today's action executors.
type executor interface {
	Start(ctx context.Context) error
	Run(ctx context.Context) error
	Close() error
	Collectors() []prometheus.Collector
}

// startExecutor starts e as a stage of the sink phase, its clients
// closed once Run returned.
func (n *node) startExecutor(ctx context.Context, name string, e executor) error {
	if err := e.Start(ctx); err != nil {
		return err
	}
	n.reg.MustRegister(e.Collectors()...)
	n.lc.run(sinkPhase, name, e.Run)
	n.lc.onStop(sinkPhase, name+" clients", func(context.Context) error { return e.Close() })
	return nil
}

func (n *node) startSinks(ctx context.Context) error {
	if err := n.startClickHouse(ctx); err != nil {
		return err
	}
	lg := n.lg
	rep, err := republish.New(republish.Options{Clients: lg, Topics: lg.Topics(), Logger: n.log})
	if err != nil {
		return err
	}
	n.reg.MustRegister(rep.Collectors()...)
	n.lc.run(sinkPhase, "command status", rep.Run)
	n.route("GET /api/commands/{id...}", apiauth.ActionRead, apiauth.Fixed("api/commands"), rep.Handler())

	// On an iotpipe embedded log (this node's or another's), a kafka
	// action's target topic is created on first use; an external
	// cluster's topics are its operator's (iotpipe rules check --kafka
	// lists the missing ones).
	var createTopic func(context.Context, string) error
	if own, err := lg.IotpipeEmbedded(ctx); err != nil {
		return err
	} else if own {
		createTopic = lg.CreateTopic
	}
	ka, err := kafkaaction.New(kafkaaction.Options{Clients: lg, Topics: lg.Topics(), CreateTopic: createTopic, Logger: n.log})
	if err != nil {
		return err
	}
	n.reg.MustRegister(ka.Collectors()...)
	n.lc.onStop(sinkPhase, "kafka executor client", func(context.Context) error { return ka.Close() })

	// The republish/command and kafka executors run on the processor
	// runtime over the actions topic: what they write is in each batch's
	// transaction with their offset (never written twice).
	topics := lg.Topics()
	topics.Changelog = topics.ActionsChangelog
	ex, err := processors.NewRunner(lg, []processors.Processor{rep, ka}, processors.RunnerOptions{
		Topics: topics, Input: topics.Actions, Group: actionsGroup, StateDir: n.cfg.path("executors"), Logger: n.log,
		FreshStart: legacyStart(lg, topics.Actions, "iotpipe-republish", "iotpipe-kafka-actions"),
	})
	if err != nil {
		return err
	}
	n.lc.onStop(sinkPhase, "executors' state store", func(context.Context) error { return ex.Close() })
	n.lc.run(sinkPhase, "action executors", ex.Run)
	n.waitReady("the action executors' partitions are not assigned yet", ex.Ready)

	wh, err := webhook.New(webhook.Options{Clients: lg, Topics: lg.Topics(), Secret: []byte(n.cfg.WebhookSecret), Logger: n.log})
	if err != nil {
		return err
	}
	n.reg.MustRegister(wh.Collectors()...)
	n.lc.run(sinkPhase, "webhook executor", wh.Run)
	return nil
}

// serveHTTP serves the API on ln (over TLS with tlsConf when not nil)
// until the accept phase stops.
func (n *node) serveHTTP(ln net.Listener, tlsConf *tls.Config) {
	mux := n.mux
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !n.ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		for _, c := range n.waits {
			if !c.ok() {
				http.Error(w, "starting: "+c.what, http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	n.route("GET /metrics", apiauth.ActionRead, apiauth.Fixed("api/metrics"), promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	if n.cfg.Pprof {
		debug := apiauth.Fixed("api/debug")
		n.route("GET /debug/pprof/", apiauth.ActionAdmin, debug, http.HandlerFunc(pprof.Index))
		n.route("GET /debug/pprof/profile", apiauth.ActionAdmin, debug, http.HandlerFunc(pprof.Profile))
		n.route("GET /debug/pprof/trace", apiauth.ActionAdmin, debug, http.HandlerFunc(pprof.Trace))
	}
	hs := n.httpServer(mux)
	serve := hs.Serve
	if tlsConf != nil {
		hs.TLSConfig = tlsConf
		serve = func(ln net.Listener) error { return hs.ServeTLS(ln, "", "") }
	}
	n.lc.run(acceptPhase, "http server", func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- serve(ln) }()
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
		}
		// Requests in progress get a grace period; then their
		// connections are closed.
		sctx, cancel := context.WithTimeout(context.Background(), httpShutdownGrace)
		defer cancel()
		if err := hs.Shutdown(sctx); err != nil {
			hs.Close()
		}
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
}

// HTTP server limits besides --http-read-timeout: a client that sent no
// header within httpHeaderTimeout, takes longer than httpWriteTimeout to
// get its answer, or keeps a connection idle for httpIdleTimeout is
// disconnected, so no client holds a descriptor for long without sending.
const (
	httpHeaderTimeout = 10 * time.Second
	httpWriteTimeout  = 2 * time.Minute
	httpIdleTimeout   = 2 * time.Minute
	httpMaxHeader     = 64 << 10
)

// httpServer is the API server with its limits: the timeouts above and
// a request body limit of 1 MiB, or the largest MQTT payload or shadow
// document plus 64 KiB when larger (the handlers keep their own tighter
// limits and status codes).
func (n *node) httpServer(h http.Handler) *http.Server {
	body := int64(max(1<<20, n.cfg.MaxPayload+64<<10, n.cfg.ShadowMaxSize+64<<10))
	return &http.Server{
		Handler:           http.MaxBytesHandler(h, body),
		ReadHeaderTimeout: min(httpHeaderTimeout, n.cfg.HTTPTimeout),
		ReadTimeout:       n.cfg.HTTPTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeader,
		ErrorLog:          slog.NewLogLogger(n.log.With("component", "http").Handler(), slog.LevelWarn),
	}
}

// httpShutdownGrace is how long requests in progress may take to finish
// once the HTTP server stopped accepting.
const httpShutdownGrace = 5 * time.Second
