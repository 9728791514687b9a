// Package relay is the at-least-once loop of the action executors whose
// effect is writing records to the log (sinks/kafka, sinks/republish):
//
//	poll → translate → produce until acknowledged → commit
//
// Run polls up to 1000 records of the executor's consumer group, hands
// them to the executor's Translate, produces what it returns and retries
// every refused record (a fresh copy each time, after Options.RetryBackoff)
// until all are acknowledged, and only then commits the polled offsets
// and allows a rebalance. When ctx ends before that, nothing of the poll
// is committed: it is polled, translated and produced again later, so an
// output may be written twice but is never lost.
//
// A record whose topic does not exist can never be acknowledged; with
// Options.DeadLetter set it is replaced by the record DeadLetter makes of
// its source (a DLQ record, typically), otherwise it is retried like any
// other refusal (until someone creates the topic).
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// maxPoll is how many records one poll returns at most.
const maxPoll = 1000

// DefaultRetryBackoff is the wait before producing refused records again
// when Options.RetryBackoff is not set.
const DefaultRetryBackoff = 500 * time.Millisecond

// Output is one record to produce and the polled record it came from.
type Output struct {
	// Record is produced as it is; on a refusal a copy of its topic, key,
	// value and headers is produced instead.
	Record *kgo.Record
	// Source is the polled record Record was translated from, handed to
	// Options.DeadLetter; nil when there is none (the record is then
	// never dead-lettered).
	Source *kgo.Record
}

// Translate turns the records of one poll into the records to produce.
// It runs on Run's goroutine. after, when not nil, runs once every output
// was acknowledged, before the poll is committed; it does not run when
// ctx ends first.
type Translate func(polled []*kgo.Record) (out []Output, after func())

// Options configure Run. All fields are optional.
type Options struct {
	// Logger receives fetch and commit warnings. Default slog.Default().
	Logger *slog.Logger
	// RetryBackoff is the wait before producing again after the log
	// refused records. Default DefaultRetryBackoff.
	RetryBackoff time.Duration
	// OnProduced, when set, receives the records the log acknowledged,
	// once per produce attempt that acknowledged any (dead letters
	// included).
	OnProduced func(acked []*kgo.Record)
	// OnRefused, when set, receives the refusals about to be retried,
	// once per produce attempt that had any, before the backoff. It is
	// not called for refusals caused by ctx ending.
	OnRefused func(refused []kgo.ProduceResult)
	// DeadLetter, when set, makes the record that replaces an output
	// whose topic does not exist (kerr.UnknownTopicOrPartition). It gets
	// the output's Source and the error "produce to <topic>: <cause>"; a
	// nil result retries the output. Nil DeadLetter: retry everything.
	DeadLetter func(src *kgo.Record, err error) *kgo.Record
}

// Run relays until ctx ends or cl is closed, then returns. cl must be a
// consumer group client with kgo.DisableAutoCommit and
// kgo.BlockRebalanceOnPoll; Run produces on it too.
func Run(ctx context.Context, cl *kgo.Client, opts Options, translate Translate) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = DefaultRetryBackoff
	}
	for {
		fs := cl.PollRecords(ctx, maxPoll)
		if ctx.Err() != nil || fs.IsClientClosed() {
			cl.AllowRebalance()
			return
		}
		fs.EachError(func(topic string, p int32, err error) {
			opts.Logger.Warn("fetch error", "topic", topic, "partition", p, "err", err)
		})
		recs := fs.Records()
		out, after := translate(recs)
		if !produce(ctx, cl, &opts, out) {
			cl.AllowRebalance()
			return // not committed: polled again later
		}
		if after != nil {
			after()
		}
		if len(recs) > 0 {
			if err := cl.CommitRecords(ctx, recs...); err != nil && ctx.Err() == nil {
				opts.Logger.Warn("commit", "err", err)
			}
		}
		cl.AllowRebalance()
	}
}

// produce writes out until every record (or its dead letter) is
// acknowledged; false when ctx ended first.
func produce(ctx context.Context, cl *kgo.Client, o *Options, out []Output) bool {
	recs := make([]*kgo.Record, 0, len(out))
	src := make(map[*kgo.Record]*kgo.Record, len(out)) // record -> polled source
	for _, x := range out {
		recs = append(recs, x.Record)
		src[x.Record] = x.Source
	}
	for len(recs) > 0 {
		var acked, next []*kgo.Record
		var refused []kgo.ProduceResult
		stopped := false
		for _, res := range cl.ProduceSync(ctx, recs...) {
			if res.Err == nil {
				acked = append(acked, res.Record)
				continue
			}
			if stopped = stopped || ctx.Err() != nil; stopped {
				continue
			}
			r, s := res.Record, src[res.Record]
			if errors.Is(res.Err, kerr.UnknownTopicOrPartition) && s != nil && o.DeadLetter != nil {
				if dl := o.DeadLetter(s, fmt.Errorf("produce to %s: %w", r.Topic, res.Err)); dl != nil {
					next = append(next, dl)
					continue
				}
			}
			refused = append(refused, res)
			nr := &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers}
			src[nr] = s
			next = append(next, nr)
		}
		if len(acked) > 0 && o.OnProduced != nil {
			o.OnProduced(acked)
		}
		if stopped {
			return false
		}
		for _, r := range recs {
			delete(src, r)
		}
		if len(refused) > 0 {
			if o.OnRefused != nil {
				o.OnRefused(refused)
			}
			select {
			case <-ctx.Done():
				return false
			case <-time.After(o.RetryBackoff):
			}
		}
		recs = next
	}
	return true
}
