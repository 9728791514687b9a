package ingest

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/iotpipe/iotpipe/internal/diskspace"
	"github.com/prometheus/client_golang/prometheus"
)

// storeWriter is the session store's one writer. The store is a record
// of sessions that live in memory, so it must never stop the broker:
// MQTT hooks hand it batches and go on (only a live-connection record
// waits, briefly, for its sync); it commits them together in arrival
// order, syncs the unsynced ones every syncEvery (Pebble keeps a partly
// filled WAL block in memory until a sync: a kill -9 lost every write
// mochi's hook made without one), and drops writes, counted and logged,
// while the disk is nearly full. Pebble treats a failed WAL write as fatal
// and calls its logger's Fatalf, whose default exits the process: here the
// store stops writing instead (see pebbleLogger) and the node serves on,
// its sessions unsaved until a restart.
type storeWriter struct {
	db     *pebble.DB
	log    *slog.Logger
	ops    chan storeOp
	ended  chan struct{}
	space  *diskspace.Watch
	failed atomic.Bool
	// full is set while writes are dropped for the disk.
	full    atomic.Bool
	dropped *prometheus.CounterVec
	logs    *rateLog

	// mu guards closed: senders take it shared, stop exclusively.
	mu     sync.RWMutex
	closed bool
}

type storeOp struct {
	what string
	b    *pebble.Batch
	sync bool
	done chan error // nil: nobody waits
}

const (
	// syncEvery bounds what a kill -9 loses of the unsynced writes.
	syncEvery = time.Second
	// storeQueue bounds the writes waiting; beyond it they are dropped.
	storeQueue = 8192
	// storeMinFree is the free space below which writes are dropped:
	// Pebble must never meet a full disk.
	storeMinFree = 16 << 20
)

var (
	errStoreFailed = errors.New("mqtt session store failed: not saving sessions until restarted")
	errStoreBusy   = errors.New("mqtt session store: too many writes waiting")
	errStoreClosed = errors.New("mqtt session store closed")
)

func newStoreWriter(db *pebble.DB, dir string, log *slog.Logger) *storeWriter {
	w := &storeWriter{
		db: db, log: log, ops: make(chan storeOp, storeQueue), ended: make(chan struct{}),
		space: &diskspace.Watch{Dir: dir, Min: storeMinFree},
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "iotpipe_ingest_session_store_dropped_total",
			Help: "Changes of MQTT sessions not saved to the session store, by reason (disk_full, failed, queue_full); the sessions themselves are kept in memory.",
		}, []string{"reason"}),
		logs: newRateLog(10 * time.Second),
	}
	go w.run()
	return w
}

// storeWaitMax bounds how long a connect waits for its live record to be
// synced: a slow disk (syncs of seconds under other writers) must not
// leave a connection without the record its disconnected event after a
// crash comes from, yet a stalled one must not hold connects forever.
const storeWaitMax = 10 * time.Second

// submit queues b (taking it over). With wait, it returns once b is
// committed (synced with sync), or after storeWaitMax.
func (w *storeWriter) submit(what string, b *pebble.Batch, sync, wait bool) error {
	op := storeOp{what: what, b: b, sync: sync}
	if wait {
		op.done = make(chan error, 1)
	}
	w.mu.RLock()
	if w.closed {
		w.mu.RUnlock()
		b.Close()
		return errStoreClosed
	}
	select {
	case w.ops <- op:
		w.mu.RUnlock()
	default:
		w.mu.RUnlock()
		b.Close()
		w.drop(1, "queue_full", errStoreBusy)
		return errStoreBusy
	}
	if !wait {
		return nil
	}
	t := time.NewTimer(storeWaitMax)
	defer t.Stop()
	select {
	case err := <-op.done:
		return err
	case <-t.C:
		return fmt.Errorf("mqtt session store: %s not saved within %v", what, storeWaitMax)
	}
}

// flush waits until every write queued before it is committed.
func (w *storeWriter) flush() error { return w.submit("flush", w.db.NewBatch(), false, true) }

// stop commits what is queued and ends the writer.
func (w *storeWriter) stop() {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.ops)
	}
	w.mu.Unlock()
	<-w.ended
}

func (w *storeWriter) run() {
	defer close(w.ended)
	tick := time.NewTicker(syncEvery)
	defer tick.Stop()
	dirty := false
	var ops []storeOp
	for {
		select {
		case <-tick.C:
			if dirty {
				dirty = w.commit(nil, true) != nil
			}
			continue
		case op, ok := <-w.ops:
			if !ok {
				if dirty {
					w.commit(nil, true)
				}
				return
			}
			ops = append(ops[:0], op)
		}
		open := w.gather(&ops)
		err := w.commit(ops, false)
		sync := false
		for _, op := range ops {
			sync = sync || op.sync
			op.b.Close()
			if op.done != nil {
				op.done <- err
			}
		}
		dirty = dirty || !sync && err == nil
		clear(ops)
		if !open {
			if dirty {
				w.commit(nil, true)
			}
			return
		}
	}
}

// gather adds the ops already waiting (up to 512); false when the queue
// is closed.
func (w *storeWriter) gather(ops *[]storeOp) bool {
	for len(*ops) < 512 {
		select {
		case op, ok := <-w.ops:
			if !ok {
				return false
			}
			*ops = append(*ops, op)
		default:
			return true
		}
	}
	return true
}

// commit writes ops in one batch (synced if one asks, or with sync), or
// drops them when the store failed or the disk is nearly full.
func (w *storeWriter) commit(ops []storeOp, sync bool) error {
	if w.failed.Load() {
		w.drop(len(ops), "failed", errStoreFailed)
		return errStoreFailed
	}
	if err := w.space.Check(); err != nil {
		w.full.Store(true)
		w.drop(len(ops), "disk_full", fmt.Errorf("%w: session changes are not saved until there is room (sessions are kept in memory)", err))
		return err
	}
	if w.full.Swap(false) {
		w.log.Info("mqtt session store: room on the disk again, saving sessions")
	}
	b := w.db.NewBatch()
	defer b.Close()
	for _, op := range ops {
		sync = sync || op.sync
		if err := b.Apply(op.b, nil); err != nil {
			w.log.Error("mqtt session store: write dropped", "what", op.what, "err", err)
		}
	}
	opts := pebble.NoSync
	if sync {
		opts = pebble.Sync
	}
	return w.apply(b, opts)
}

// apply commits b; a fatal Pebble error (see pebbleLogger) fails the
// store instead of the process.
func (w *storeWriter) apply(b *pebble.Batch, opts *pebble.WriteOptions) (err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(pebbleFatal)
			if !ok {
				panic(r)
			}
			err = f
		}
	}()
	if b.Empty() {
		return w.db.LogData(nil, opts) // a sync alone
	}
	return b.Commit(opts)
}

// fail stops the store's writes for good (until a restart).
func (w *storeWriter) fail(why string) {
	if !w.failed.Swap(true) {
		w.log.Error("mqtt session store failed: session changes are not saved until iotpipe restarts (the sessions are kept in memory; free disk space, then restart)", "err", why)
	}
}

// drop counts n writes not saved and logs why, once per 10s per reason.
func (w *storeWriter) drop(n int, reason string, err error) {
	if n == 0 {
		return
	}
	w.dropped.WithLabelValues(reason).Add(float64(n))
	if ok, held := w.logs.allow(reason, time.Now()); ok {
		w.log.Warn("mqtt session store: changes not saved", "reason", reason, "count", n+held, "err", err)
	}
}

// pebbleFatal is what Fatalf panics with on the writer's goroutine.
type pebbleFatal string

func (f pebbleFatal) Error() string { return string(f) }

// pebbleLogger sends Pebble's messages to slog. Its Fatalf fails the
// store instead of ending the process: on the writer's commit (Pebble's
// "fatal commit error", a WAL write that failed) it panics for apply to
// recover; on one of Pebble's own goroutines (a MANIFEST write that
// failed during a flush) it ends that goroutine. Either way the store
// writes and reads no more.
type pebbleLogger struct {
	log *slog.Logger
	w   *storeWriter
}

func (l *pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug("mqtt session store: " + fmt.Sprintf(format, args...))
}

func (l *pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("mqtt session store: " + fmt.Sprintf(format, args...))
}

func (l *pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if l.w == nil { // still opening: Open returns the error
		panic(pebbleFatal(msg))
	}
	l.w.fail(msg)
	if strings.HasPrefix(msg, "pebble: fatal commit error") {
		panic(pebbleFatal(msg))
	}
	runtime.Goexit()
}
