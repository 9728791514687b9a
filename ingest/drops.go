package ingest

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/system"
	"github.com/prometheus/client_golang/prometheus"
)

// Messages mochi drops for a subscriber that does not keep up are counted
// by mochi itself (its $SYS counters) and, for the in-flight store, logged
// by it once per message ("client store quota reached"): a stalled
// subscriber made tens of thousands of lines a second. The counters
// become iotpipe_ingest_dropped_total{reason}, and mochi's log goes
// through quietHandler.

// dropMetrics reads mochi's drop counters.
type dropMetrics struct {
	// inflightFull counts QoS 1/2 messages not sent because the
	// subscriber's in-flight store was full (or out of packet ids).
	inflightFull prometheus.CounterFunc
	// queueFull counts messages not sent because the subscriber's write
	// queue was full.
	queueFull prometheus.CounterFunc
}

func newDropMetrics(info *system.Info) *dropMetrics {
	counter := func(reason string, v *int64) prometheus.CounterFunc {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "iotpipe_ingest_dropped_total",
			Help:        "Messages not delivered to a subscriber that does not keep up, by reason (inflight_full: its unacknowledged QoS 1/2 messages reached the in-flight limit; queue_full: its write queue was full).",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(atomic.LoadInt64(v)) })
	}
	return &dropMetrics{
		inflightFull: counter("inflight_full", &info.InflightDropped),
		queueFull:    counter("queue_full", &info.MessagesDropped),
	}
}

func (d *dropMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{d.inflightFull, d.queueFull}
}

// quietHandler passes mochi's log records on, except that warnings and
// errors repeating one message for one client go out once per interval,
// with the number held back since the last one as "suppressed".
type quietHandler struct {
	inner slog.Handler
	rl    *rateLog
}

func newQuietLogger(l *slog.Logger, every time.Duration) *slog.Logger {
	return slog.New(&quietHandler{inner: l.Handler(), rl: newRateLog(every)})
}

func (h *quietHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

func (h *quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.inner.Handle(ctx, r)
	}
	key := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "client" {
			key += "\x00" + a.Value.String()
			return false
		}
		return true
	})
	now := r.Time
	if now.IsZero() {
		now = time.Now()
	}
	ok, suppressed := h.rl.allow(key, now)
	if !ok {
		return nil
	}
	if say, ok := mochiWarnings[r.Message]; ok || suppressed > 0 {
		if ok {
			out := slog.NewRecord(r.Time, r.Level, say, r.PC)
			r.Attrs(func(a slog.Attr) bool { out.AddAttrs(a); return true })
			r = out
		} else {
			r = r.Clone()
		}
		if suppressed > 0 {
			r.AddAttrs(slog.Int("suppressed", suppressed))
		}
	}
	return h.inner.Handle(ctx, r)
}

// mochiWarnings say what mochi's terse warnings mean for an operator.
var mochiWarnings = map[string]string{
	"client store quota reached": "subscriber does not acknowledge: QoS 1/2 messages to it are dropped (in-flight limit reached; iotpipe_ingest_dropped_total{reason=\"inflight_full\"})",
	"packet ids exhausted":       "subscriber does not acknowledge: messages to it are dropped (no free packet id; iotpipe_ingest_dropped_total{reason=\"inflight_full\"})",
}

func (h *quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &quietHandler{inner: h.inner.WithAttrs(as), rl: h.rl}
}

func (h *quietHandler) WithGroup(name string) slog.Handler {
	return &quietHandler{inner: h.inner.WithGroup(name), rl: h.rl}
}
