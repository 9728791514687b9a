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
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotpipe/iotpipe/ingest"
	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/lastseen"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
)

// roles says which parts one process runs.
type roles struct {
	ingest, process bool
}

const roleHelp = `Usage: iotpipe %s [flags]

%s

Flags (precedence: defaults < --config file < IOTPIPE_* environment < flags):
`

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return serve(ctx, "run", "Runs the whole pipeline in one process: the embedded log (unless --kafka),\nthe MQTT front, the processors and the HTTP API.", roles{ingest: true, process: true}, args, stderr)
}

func ingestMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return serve(ctx, "ingest", "Runs the MQTT/HTTP front only, writing to the log (the embedded log unless\n--kafka; other processes reach it on 127.0.0.1:--kafka-port).", roles{ingest: true}, args, stderr)
}

func processMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return serve(ctx, "process", "Runs the partition-task processors only, in the consumer group\niotpipe-processors, against --kafka (default 127.0.0.1:9092).", roles{process: true}, args, stderr)
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

// node is one running iotpipe process.
type node struct {
	cfg   config
	roles roles
	log   *slog.Logger
	ready atomic.Bool
}

func (n *node) run(ctx context.Context) error {
	cfg := n.cfg
	if n.roles.ingest && cfg.Dev {
		n.log.Warn("**********************************************************************")
		n.log.Warn("--dev: ANONYMOUS DEVICES ALLOWED. Anyone who reaches " + cfg.MQTTAddr + " can connect,")
		n.log.Warn("publish and subscribe to any topic. Never expose this to a network.")
		n.log.Warn("**********************************************************************")
	} else if n.roles.ingest {
		n.log.Warn("identity is not configured yet: every device connection will be refused; pass --dev to allow anonymous devices")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()

	lg, err := eventlog.Open(ctx, eventlog.Options{
		Brokers: cfg.brokers(), DataDir: cfg.path("kafka"), Port: cfg.KafkaPort, SyncWrites: cfg.SyncWrites,
		Partitions: int32(cfg.Partitions), RetentionTime: cfg.Retention, RetentionBytes: cfg.RetentionBytes, Logger: n.log,
	})
	if err != nil {
		return err
	}
	defer lg.Close()

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var srv *ingest.Server
	if n.roles.ingest {
		prod, err := lg.Client(ingest.ProducerOpts()...)
		if err != nil {
			return err
		}
		defer prod.Close()
		srv, err = ingest.New(prod, ingest.Options{
			MQTTAddr: cfg.MQTTAddr, Dev: cfg.Dev, Topics: lg.Topics(), MaxInFlight: cfg.MaxInFlight,
			MaxPayload: cfg.MaxPayload, Node: cfg.Node, Logger: n.log,
		})
		if err != nil {
			return err
		}
		reg.MustRegister(srv.Collectors()...)
		if err := srv.Start(); err != nil {
			return err
		}
		defer func() {
			srv.Close()
			fctx, c := context.WithTimeout(context.Background(), 10*time.Second)
			defer c()
			if err := prod.Flush(fctx); err != nil {
				n.log.Warn("flush producer", "err", err)
			}
		}()
		out, err := lg.Client(kgo.ConsumeTopics(lg.Topics().Outbound), kgo.ConsumerGroup(srv.OutboundGroup()),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()), kgo.FetchMaxWait(50*time.Millisecond))
		if err != nil {
			return err
		}
		defer out.Close()
		wg.Add(1)
		go func() { defer wg.Done(); errc <- srv.DeliverOutbound(ctx, out) }()
		mux.HandleFunc("POST /topics/{topic...}", srv.HTTPPublish)
		mux.HandleFunc("GET /things/{thing}/shadow", srv.ShadowHTTP)
		mux.HandleFunc("POST /things/{thing}/shadow", srv.ShadowHTTP)
		mux.HandleFunc("DELETE /things/{thing}/shadow", srv.ShadowHTTP)
	}

	if n.roles.process {
		procs := []processors.Processor{
			lastseen.Processor{},
			shadow.New(shadow.Options{Topics: lg.Topics(), AllowOtherThings: cfg.Dev}),
		}
		runner, err := processors.NewRunner(lg, procs, processors.RunnerOptions{
			Topics: lg.Topics(), StateDir: cfg.path("state"), Logger: n.log,
		})
		if err != nil {
			return err
		}
		defer runner.Close()
		reg.MustRegister(runner.Collectors()...)
		mux.Handle("GET /api/things/{name}", lastseen.Handler(runner))
		wg.Add(1)
		go func() { defer wg.Done(); errc <- runner.Run(ctx) }()
	}

	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !n.ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", cfg.HTTPAddr, err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	n.ready.Store(true)
	n.log.Info("iotpipe ready", "http", ln.Addr().String(), "kafka", lg.Brokers(), "ingest", n.roles.ingest, "process", n.roles.process)

	var runErr error
	select {
	case <-ctx.Done():
		n.log.Info("shutting down")
	case runErr = <-errc:
	}
	n.ready.Store(false)
	cancel()
	sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
	defer c()
	_ = hs.Shutdown(sctx)
	wg.Wait()
	return runErr
}
