// Package registry is iotpipe's identity registry: things, device
// certificates, CA certificates, policies, tokens and their attachments
// (AWS IoT's registry semantics), kept as events on a compacted topic
// of the log.
//
// Every ingest node runs a Registry. It materializes the topic (read
// committed) into a local Pebble view and follows it, so several nodes
// agree, and a restart resumes from the view's position while a new
// node rebuilds the view from the topic. Reads (the lookups the MQTT
// front makes on every CONNECT) are Pebble gets of that view. Writes go
// through the log: checked against the view brought up to the log's end,
// produced in a transaction whose producer fences every other node's
// registry writer (so a check cannot race another node's write), and
// returned once this node's view applied them, so a CLI command
// followed by a connect sees its effect.
package registry

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ClientFactory makes franz-go clients for the log (eventlog.Log does).
type ClientFactory interface {
	Client(opts ...kgo.Opt) (*kgo.Client, error)
}

// Options configures a Registry. The zero value of a field means its
// documented default.
type Options struct {
	// Dir is the directory of the local view (required).
	Dir string
	// Topic is the registry topic (default
	// schemas.DefaultTopics().Registry).
	Topic string
	// CheckPolicy checks a policy document before it is stored (the
	// policy evaluator's parser); every document must also be a JSON
	// object of at most MaxPolicyDocument characters without white
	// space, whether CheckPolicy is set or not.
	CheckPolicy func(document []byte) error
	// AccountID is the awsAccountId of JIT registration events (default
	// "000000000000").
	AccountID string
	// Now is the clock of creation and modification times (default
	// time.Now).
	Now func() time.Time
	// Logger receives logs (default slog.Default()).
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.Topic == "" {
		o.Topic = schemas.DefaultTopics().Registry
	}
	if o.AccountID == "" {
		o.AccountID = "000000000000"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Registry is a node's registry: its view of the registry topic and the
// way to change it. Its lookups are safe for concurrent use; Run must be
// running for writes to complete and for the view to follow the log.
type Registry struct {
	opts    Options
	factory ClientFactory
	topic   string
	log     *slog.Logger
	metrics *metrics

	db *pebble.DB
	// cl reads the topic and asks for its end offsets.
	cl       *kgo.Client
	progress *progress

	running chan struct{} // closed when Run starts
	// checked is closed once the view's position was checked against
	// the log (same topic, within its range): a view made from another
	// log is reset before anything waits on its position.
	checked     chan struct{}
	checkedOnce sync.Once
	ready       chan struct{} // closed once the view caught up at start
	stopped     chan struct{} // closed when Run ends
	ops         chan *op

	watchMu  sync.Mutex
	watchers map[int]func(Change)
	watchID  int

	// prod is the writer's transactional producer (the writer goroutine
	// only).
	prod *kgo.Client

	// hooks let tests hold a node at a step; nil in production.
	hooks testHooks
}

// testHooks are called, when set, at steps tests need to hold.
type testHooks struct {
	// beforeOps runs in each try of a transaction after the view caught
	// up, before the operations run.
	beforeOps func()
	// beforeApply runs before the view applies a fetch.
	beforeApply func()
}

// New opens the view under opts.Dir; Run follows the log.
func New(factory ClientFactory, opts Options) (*Registry, error) {
	opts.defaults()
	if opts.Dir == "" {
		return nil, fmt.Errorf("registry: no directory for the view")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("registry view: %w", err)
	}
	db, err := pebble.Open(opts.Dir, &pebble.Options{Logger: pebbleLogger{opts.Logger}})
	if err != nil {
		return nil, fmt.Errorf("registry view: open %s: %w", opts.Dir, err)
	}
	_, next, err := position(db)
	if err != nil {
		db.Close()
		return nil, err
	}
	cl, err := factory.Client(kgo.RequestRetries(3))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &Registry{
		opts: opts, factory: factory, topic: opts.Topic, log: opts.Logger, metrics: newMetrics(),
		db: db, cl: cl, progress: newProgress(next),
		running: make(chan struct{}), checked: make(chan struct{}), ready: make(chan struct{}), stopped: make(chan struct{}),
		ops: make(chan *op, maxBatch), watchers: map[int]func(Change){},
	}, nil
}

// Run follows the registry topic and carries out writes until ctx ends.
// Ready is closed once the view holds everything committed when Run
// started. Run may be called once; it returns nil when ctx ends, or the
// view's failure.
func (r *Registry) Run(ctx context.Context) error {
	close(r.running)
	defer close(r.stopped)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		r.catchUp(ctx)
	}()
	go func() {
		defer wg.Done()
		r.writeLoop(ctx)
	}()
	err := r.follow(ctx)
	cancel()
	wg.Wait()
	if r.prod != nil {
		r.prod.Close()
		r.prod = nil
	}
	return err
}

// catchUp closes ready once the view, checked against the log, reaches
// the log's committed end as it is at start.
func (r *Registry) catchUp(ctx context.Context) {
	start := time.Now()
	select {
	case <-r.checked:
	case <-ctx.Done():
		return
	}
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		end, err := r.committedEnd(ctx)
		if err == nil {
			if err := r.progress.wait(ctx, r.stopped, end); err != nil {
				return
			}
			r.log.Info("registry view ready", "topic", r.topic, "offset", end, "took", time.Since(start).Round(time.Millisecond))
			close(r.ready)
			return
		}
		r.log.Warn("registry: end offset of the registry topic", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// Ready is closed once the view holds every record committed when Run
// started: the front should refuse connections until then.
func (r *Registry) Ready() <-chan struct{} { return r.ready }

// WaitReady waits for Ready, ctx or the end of Run.
func (r *Registry) WaitReady(ctx context.Context) error {
	select {
	case <-r.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("registry view not ready: %w", ctx.Err())
	case <-r.stopped:
		return ErrClosed
	}
}

// Close releases the view and the log client; call it after Run ended.
func (r *Registry) Close() error {
	r.cl.Close()
	if err := r.db.Close(); err != nil {
		return fmt.Errorf("registry view: close: %w", err)
	}
	return nil
}

// Collectors returns the registry's Prometheus collectors.
func (r *Registry) Collectors() []prometheus.Collector { return r.metrics.collectors() }

// Change is one change of the registry as this node's view applied it.
type Change struct {
	// Key is the record key.
	Key string
	// Offset is the record's offset on the registry topic.
	Offset int64
	// Old is the entity before (nil when it did not exist), New after
	// (nil when deleted).
	Old, New Entity
}

// End says which live sessions a change ends.
type End struct {
	// Principal is the certificate id or token principal whose sessions
	// end ("" with Thing).
	Principal string
	// TokenID, with Principal, ends only the sessions of that token.
	TokenID string
	// Thing is the thing whose sessions end ("" with Principal).
	Thing string
	// Reason says why, for the lifecycle event and the log.
	Reason string
}

// Ends returns the sessions c ends: those of a certificate that stopped
// being ACTIVE (deactivated, revoked, deleted), of a token revoked, and
// of a thing deleted.
func (c Change) Ends() (End, bool) {
	switch old := c.Old.(type) {
	case *Certificate:
		if old.Status != StatusActive {
			return End{}, false
		}
		if cur, ok := c.New.(*Certificate); ok {
			if cur.Status == StatusActive {
				return End{}, false
			}
			return End{Principal: old.ID, Reason: "certificate " + string(cur.Status)}, true
		}
		return End{Principal: old.ID, Reason: "certificate deleted"}, true
	case *Token:
		if c.New == nil {
			return End{Principal: old.Principal, TokenID: old.ID, Reason: "token revoked"}, true
		}
	case *Thing:
		if c.New == nil {
			return End{Thing: old.Name, Reason: "thing deleted"}, true
		}
	}
	return End{}, false
}

// Watch calls fn with every change this node's view applies from now
// on, in log order, until the returned cancel is called. fn runs on the
// view's goroutine: it must not block (hand the change to another
// goroutine) and must not write to the registry.
func (r *Registry) Watch(fn func(Change)) (cancel func()) {
	r.watchMu.Lock()
	defer r.watchMu.Unlock()
	id := r.watchID
	r.watchID++
	r.watchers[id] = fn
	return func() {
		r.watchMu.Lock()
		delete(r.watchers, id)
		r.watchMu.Unlock()
	}
}

func (r *Registry) notify(changes []Change) {
	if len(changes) == 0 {
		return
	}
	r.watchMu.Lock()
	fns := make([]func(Change), 0, len(r.watchers))
	for _, fn := range r.watchers {
		fns = append(fns, fn)
	}
	r.watchMu.Unlock()
	for _, c := range changes {
		for _, fn := range fns {
			fn(c)
		}
	}
}

// pebbleLogger sends Pebble's logs to slog: its progress at debug level.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("registry view: " + fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error("registry view: " + msg)
	panic("registry view: " + msg)
}

type metrics struct {
	applied, invalid, writes, retries, writeErrors, jit prometheus.Counter
}

func newMetrics() *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	return &metrics{
		applied:     c("iotpipe_registry_records_applied_total", "Registry topic records this node's view applied."),
		invalid:     c("iotpipe_registry_invalid_records_total", "Registry topic records that were not valid (applied as deletes of their key)."),
		writes:      c("iotpipe_registry_writes_total", "Registry transactions this node committed."),
		retries:     c("iotpipe_registry_write_retries_total", "Registry transactions tried again (another node wrote first, or the log failed)."),
		writeErrors: c("iotpipe_registry_write_errors_total", "Registry writes that failed after their retries."),
		jit:         c("iotpipe_registry_jit_registrations_total", "Certificates registered just in time by this node."),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.applied, m.invalid, m.writes, m.retries, m.writeErrors, m.jit}
}
