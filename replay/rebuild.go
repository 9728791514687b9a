package replay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/rulesql/ruletest"
	"github.com/iotpipe/iotpipe/schemas"
)

// RebuildOptions configure Rebuild.
type RebuildOptions struct {
	// Clients reach the log (eventlog.Log).
	Clients processors.ClientFactory
	// StateDir is the stopped node's processor state (<data-dir>/state).
	StateDir string
	// Topics are the log's topics (default schemas.DefaultTopics()).
	Topics schemas.Topics
	// Processors names the processors to rebuild (their state names:
	// lastseen, shadow, rules); empty: all.
	Processors []string
	// FromEvents rebuilds from the events the log holds (up to the
	// offset the changelog records) instead of from the changelog, and
	// writes what differs to the changelog.
	FromEvents bool
	// NewProcessors returns the node's processors in the node's order
	// (FromEvents runs them all: a processor may read another's state).
	NewProcessors func() ([]processors.Processor, error)
	// Logger receives progress (default slog.Default()).
	Logger *slog.Logger

	// OnPartition, when set, is called after each partition is
	// rebuilt (RebuildLive), with how many are done of how many.
	OnPartition func(done, total int)
}

// RebuildCount is what a rebuild did to one processor's state.
type RebuildCount struct {
	// Keys is how many keys the processor has after the rebuild.
	Keys int `json:"keys"`
	// Differed counts the keys whose local value differed from the
	// rebuilt one (added, changed or removed).
	Differed int `json:"differed"`
	// Written counts the keys written to the changelog (FromEvents: the
	// events gave another value than the changelog held).
	Written int `json:"written"`
}

// RebuildReport is what a rebuild did.
type RebuildReport struct {
	// Partitions is how many partitions were rebuilt.
	Partitions int `json:"partitions"`
	// Processors counts per processor, summed over the partitions.
	Processors map[string]*RebuildCount `json:"processors"`
	// Whole lists the partitions whose local state was behind the
	// changelog: they were restored whole, every processor, as a runner
	// would at start.
	Whole []int32 `json:"restored_whole,omitempty"`
}

// Rebuild rebuilds processors' state on a stopped node into a fresh
// store (in memory, a partition at a time) and swaps it into the node's
// state directory, partition by partition, in one synced batch each.
//
// From the changelog (the default), a processor's state is what the
// changelog holds: the state any node would restore. From the events
// (FromEvents), the processors run over the events of each partition
// with effects off (a processors.Harness, DryRun; timers and windows
// ticked on the events' receive times, as replay does) up to the offset
// the changelog records, and the keys where the result differs from the
// changelog are written to it first (a transaction under the
// partition's transactional id), so the changelog, the local state and
// a later restore agree. A partition whose events the log no longer
// holds from its start (retention) is refused: its rebuilt state would
// miss them.
func Rebuild(ctx context.Context, o RebuildOptions) (*RebuildReport, error) {
	if o.Topics.Events == "" {
		o.Topics = schemas.DefaultTopics()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	sd, err := processors.OpenStateDir(o.StateDir)
	if err != nil {
		return nil, err
	}
	defer sd.Close()
	n, err := eventlog.PartitionCount(ctx, o.Clients.Client, o.Topics.Changelog)
	if err != nil {
		return nil, err
	}
	rep := &RebuildReport{Partitions: int(n), Processors: map[string]*RebuildCount{}}
	var starts map[int32]int64
	if o.FromEvents {
		if starts, err = startOffsets(ctx, o.Clients, o.Topics.Events); err != nil {
			return nil, err
		}
	}
	for p := range n {
		build := func(next int64) (map[string][]byte, error) { return o.fromEvents(ctx, p, next, time.Time{}) }
		if err := rebuildPartition(ctx, &o, stoppedPartition{sd, p, &o}, p, starts, rep, build); err != nil {
			return rep, fmt.Errorf("partition %d: %w", p, err)
		}
	}
	return rep, nil
}

// LiveRunner is a running node's processors (processors.Runner).
type LiveRunner interface {
	Partitions() []int32
	Hold(ctx context.Context, p int32, fn func(*processors.Held) error) error
}

// RebuildLive rebuilds processors' state on a running node, as Rebuild
// does on a stopped one, for the partitions the node processes: a
// partition at a time, each held between two of its batches while its
// state is rebuilt (its events wait in the log and are applied after,
// on the rebuilt state; the other partitions and ingest go on).
// o.StateDir is not used. From the events, timers and windows are
// ticked on the events' receive times up to the partition's last tick on
// the node, then at that tick's time: what was due by then has fired
// (the node fired it: it is not pending again in the rebuilt state), what
// was not is still pending (the node fires it, once). A partition that
// has not ticked yet since it started on the node is refused (try again
// a second later).
func RebuildLive(ctx context.Context, o RebuildOptions, r LiveRunner) (*RebuildReport, error) {
	if o.Topics.Events == "" {
		o.Topics = schemas.DefaultTopics()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	ps := r.Partitions()
	if len(ps) == 0 {
		return nil, errors.New("this node processes no partition (yet)")
	}
	rep := &RebuildReport{Partitions: len(ps), Processors: map[string]*RebuildCount{}}
	var starts map[int32]int64
	if o.FromEvents {
		var err error
		if starts, err = startOffsets(ctx, o.Clients, o.Topics.Events); err != nil {
			return nil, err
		}
	}
	for i, p := range ps {
		held, err := rebuildHeld(ctx, &o, r, p, starts, rep)
		if err != nil {
			return rep, fmt.Errorf("partition %d: %w", p, err)
		}
		o.Logger.Info("partition rebuilt", "partition", p, "held", held.Round(time.Millisecond))
		if o.OnPartition != nil {
			o.OnPartition(i+1, len(ps))
		}
	}
	return rep, nil
}

// rebuildHeld rebuilds partition p of a running node and returns how
// long the partition was held. From the events, the events the node had
// applied before it are run first, without holding it (bounded by its
// last tick then), so that it is held only while the processors run over
// the events applied since.
func rebuildHeld(ctx context.Context, o *RebuildOptions, r LiveRunner, p int32, starts map[int32]int64, rep *RebuildReport) (time.Duration, error) {
	var b *eventBuilder
	if o.FromEvents {
		var next int64
		var tick time.Time
		if err := r.Hold(ctx, p, func(h *processors.Held) error {
			next, tick = h.Next(), h.LastTick()
			return nil
		}); err != nil {
			return 0, err
		}
		if tick.IsZero() {
			return 0, errors.New("the partition has not ticked yet since it started on this node (its timers' state is not settled): try again in a second")
		}
		var err error
		if b, err = o.newEventBuilder(ctx, p); err != nil {
			return 0, err
		}
		defer b.close()
		if starts[p] == 0 {
			if err := b.advance(ctx, next, tick, true); err != nil {
				return 0, err
			}
		}
	}
	var held time.Duration
	err := r.Hold(ctx, p, func(h *processors.Held) error {
		start := time.Now()
		defer func() { held = time.Since(start) }()
		var build buildFunc
		if b != nil {
			build = func(next int64) (map[string][]byte, error) {
				if err := b.advance(ctx, next, h.LastTick(), false); err != nil {
					return nil, err
				}
				return b.state(ctx, h.LastTick())
			}
		}
		return rebuildPartition(ctx, o, h, p, starts, rep, build)
	})
	return held, err
}

// partitionTarget is where a rebuild reads and replaces a partition's
// state and corrects its changelog: a stopped node's state directory,
// or a running node's held partition (processors.Held).
type partitionTarget interface {
	State() (map[string][]byte, int64, error)
	Replace(names []string, state map[string][]byte, changelogEnd int64) error
	WriteChangelog(ctx context.Context, kv map[string][]byte) (int64, error)
}

// stoppedPartition is a partition of a stopped node's state directory.
type stoppedPartition struct {
	sd *processors.StateDir
	p  int32
	o  *RebuildOptions
}

func (s stoppedPartition) State() (map[string][]byte, int64, error) { return s.sd.Partition(s.p) }

func (s stoppedPartition) Replace(names []string, state map[string][]byte, changelogEnd int64) error {
	return s.sd.Replace(s.p, names, state, changelogEnd)
}

func (s stoppedPartition) WriteChangelog(ctx context.Context, kv map[string][]byte) (int64, error) {
	return processors.WriteChangelog(ctx, s.o.Clients, processors.RunnerOptions{Topics: s.o.Topics}, s.p, kv)
}

func startOffsets(ctx context.Context, f processors.ClientFactory, topic string) (map[int32]int64, error) {
	cl, err := f.Client()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	lo, err := kadm.NewClient(cl).ListStartOffsets(ctx, topic)
	if err == nil {
		err = lo.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	lo.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// selected reports whether key (changelog form) belongs to a processor
// the rebuild is about, and which.
func (o *RebuildOptions) selected(key string) (string, bool) {
	name, _, ok := strings.Cut(key, "\x00")
	if !ok || name == "" {
		return "", false
	}
	return name, len(o.Processors) == 0 || slices.Contains(o.Processors, name)
}

// buildFunc returns the state a partition's events give up to next.
type buildFunc func(next int64) (map[string][]byte, error)

func rebuildPartition(ctx context.Context, o *RebuildOptions, sd partitionTarget, p int32, starts map[int32]int64, rep *RebuildReport, build buildFunc) error {
	cl, clEnd, err := processors.ChangelogState(ctx, o.Clients, o.Topics.Changelog, p)
	if err != nil {
		return err
	}
	local, localEnd, err := sd.State()
	if err != nil {
		return err
	}
	// A local state behind the changelog (or ahead of it) is restored
	// whole, as a runner would.
	whole := localEnd != clEnd || !bytes.Equal(local[processors.OffsetKey], cl[processors.OffsetKey])
	next := processors.NextOffset(cl)
	if o.FromEvents && next > 0 {
		if s := starts[p]; s > 0 {
			return fmt.Errorf("the log no longer holds its events before offset %d (retention): a state rebuilt from the rest would miss them; rebuild from the changelog (without --from-events)", s)
		}
		built, err := build(next)
		if err != nil {
			return err
		}
		diff := map[string][]byte{}
		for k, v := range built {
			if _, sel := o.selected(k); sel && !bytes.Equal(cl[k], v) {
				diff[k] = v
			}
		}
		for k := range cl {
			if _, sel := o.selected(k); sel && built[k] == nil {
				diff[k] = nil
			}
		}
		if len(diff) > 0 {
			if clEnd, err = sd.WriteChangelog(ctx, diff); err != nil {
				return err
			}
			if !whole {
				localEnd = clEnd // the other processors' keys stay current
			}
			for k, v := range diff {
				name, _ := o.selected(k)
				rep.count(name).Written++
				if v == nil {
					delete(cl, k)
				} else {
					cl[k] = v
				}
			}
			o.Logger.Info("changelog corrected from the events", "partition", p, "keys", len(diff))
		}
	}
	for k, v := range cl {
		if name, sel := o.selected(k); sel {
			rep.count(name).Keys++
			if !bytes.Equal(local[k], v) {
				rep.count(name).Differed++
			}
		}
	}
	for k := range local {
		if name, sel := o.selected(k); sel && cl[k] == nil {
			rep.count(name).Differed++
		}
	}
	if whole || len(o.Processors) == 0 {
		if whole {
			rep.Whole = append(rep.Whole, p)
		}
		return sd.Replace(nil, cl, clEnd)
	}
	return sd.Replace(o.Processors, cl, localEnd)
}

func (r *RebuildReport) count(name string) *RebuildCount {
	c := r.Processors[name]
	if c == nil {
		c = &RebuildCount{}
		r.Processors[name] = c
	}
	return c
}

// fromEvents runs the node's processors over partition p's events up to
// next, effects off, ticked on the events' receive times, and returns
// the state they leave (keyed as the changelog is). With tickTo set (a
// running node's last tick), no tick goes past it, and a last tick runs
// at it.
func (o *RebuildOptions) fromEvents(ctx context.Context, p int32, next int64, tickTo time.Time) (map[string][]byte, error) {
	b, err := o.newEventBuilder(ctx, p)
	if err != nil {
		return nil, err
	}
	defer b.close()
	if err := b.advance(ctx, next, tickTo, false); err != nil {
		return nil, err
	}
	return b.state(ctx, tickTo)
}

// eventBuilder runs the node's processors over a partition's events,
// effects off, in steps: a running node's rebuild reads most of them
// before it holds the partition, and only the rest while it holds it.
type eventBuilder struct {
	o    *RebuildOptions
	p    int32
	h    *processors.Harness
	seg  []*kgo.Record
	last time.Time
	// read is the offset the next step reads from; ticked the last
	// tick (Unix ms) once started.
	read    int64
	ticked  int64
	started bool
}

func (o *RebuildOptions) newEventBuilder(ctx context.Context, p int32) (*eventBuilder, error) {
	procs, err := o.NewProcessors()
	if err != nil {
		return nil, err
	}
	h, err := processors.NewHarness(procs...)
	if err != nil {
		return nil, err
	}
	n, err := eventlog.PartitionCount(ctx, o.Clients.Client, o.Topics.Events)
	if err != nil {
		h.Close()
		return nil, err
	}
	h.DryRun, h.DropChangelog, h.Partitions, h.DLQ = true, true, int(n), o.Topics.DLQ
	return &eventBuilder{o: o, p: p, h: h}, nil
}

func (b *eventBuilder) close() { b.h.Close() }

// run applies the events held.
func (b *eventBuilder) run(ctx context.Context) error {
	if len(b.seg) == 0 {
		return nil
	}
	b.h.Now = b.last
	_, err := b.h.Records(ctx, b.seg)
	b.seg = b.seg[:0]
	return err
}

// advance applies the events from where the last step stopped up to
// next, ticked on their receive times but never past tickTo (zero: no
// bound). With early, it stops instead before the first event that
// would need a tick past tickTo, so that a later step, with a later
// bound, goes on exactly as one step to its bound would have.
func (b *eventBuilder) advance(ctx context.Context, next int64, tickTo time.Time, early bool) error {
	if next <= b.read {
		return nil
	}
	h, p := b.h, b.p
	stop := next
	_, err := eventlog.ReadPartition(ctx, b.o.Clients.Client, b.o.Topics.Events, p, b.read, func(r *kgo.Record) error {
		if r.Offset >= next {
			return eventlog.ErrStop
		}
		ev := decode(r)
		if ev.Err == nil && ruletest.Routable(string(ev.Envelope.Type)) {
			t := ruletest.TickAt(ev.Time().UnixMilli())
			capped := !tickTo.IsZero() && t > tickTo.UnixMilli()
			if !b.started {
				b.started, b.ticked = true, t
			} else if t > b.ticked && capped && early {
				stop = r.Offset
				return eventlog.ErrStop
			} else if t > b.ticked && !capped {
				if err := b.run(ctx); err != nil {
					return err
				}
				b.ticked, h.Now = t, time.UnixMilli(t)
				if _, err := h.Tick(ctx, p); err != nil {
					return err
				}
			}
		}
		b.last = ev.Time()
		b.seg = append(b.seg, r)
		if len(b.seg) >= segmentMax {
			return b.run(ctx)
		}
		return nil
	})
	if err == nil {
		err = b.run(ctx)
	}
	if err != nil {
		return fmt.Errorf("rebuild from the events: %w", err)
	}
	b.read = stop
	return nil
}

// state ticks at tickTo (when set) and returns the state the events
// left, checked to be at the offset the last step reached.
func (b *eventBuilder) state(ctx context.Context, tickTo time.Time) (map[string][]byte, error) {
	if !tickTo.IsZero() && b.started {
		b.h.Now = tickTo
		if _, err := b.h.Tick(ctx, b.p); err != nil {
			return nil, fmt.Errorf("rebuild from the events: %w", err)
		}
	}
	snap, err := b.h.Snapshot(b.p)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(snap))
	for k, v := range snap {
		out[k] = []byte(v)
	}
	if got := processors.NextOffset(out); got != b.read {
		return nil, fmt.Errorf("rebuild from the events reached offset %d, the changelog records %d", got, b.read)
	}
	return out, nil
}
