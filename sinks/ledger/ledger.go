// Package ledger is the action executors' durable record of the effects
// they executed, so that an effect is never repeated after a restart of
// the executor or a move of its partitions to another instance.
//
// Per (executor group, actions partition) one record on the compacted
// topic schemas.Topics.Executed, keyed "<group>/<actions topic>/<partition>",
// holds the partition's resume offset (every record below it is done:
// executed, dead-lettered or skipped), the offset after the highest done
// record, and the offsets between the two that are not done yet. That is
// bounded by the records in flight, not by the records done above a slow
// one, and it is exact: an offset is one record, so one effect.
//
// Records with the same idempotency key at two offsets (a processor that
// emitted an action again) are executed once: while the first is being
// executed the second waits on it (Duplicate), and once it is done the
// key is among the recent keys (the last Options.Recent done records of
// the partition; they are read back from the actions partition itself
// when a partition is loaded, so the ledger record stays small).
//
// The ledger record of an actions partition goes to the ledger topic's
// partition of the same number (hashed by key when the ledger topic has
// fewer), so loading a partition reads one partition of the ledger topic.
//
// An executor loads a partition when it is assigned, resumes reading at
// Resume, asks Read for each record it reads, calls Done for each record
// it finished, and calls Flush before committing its consumer group
// offsets (which are then informational: the ledger is the truth).
package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
)

// ClientFactory makes franz-go clients for the log (eventlog.Log does).
type ClientFactory interface {
	Client(opts ...kgo.Opt) (*kgo.Client, error)
}

// DefaultRecent is the default number of recent keys kept per partition.
const DefaultRecent = 10000

// Options configure a Ledger. Group and a ClientFactory are required.
type Options struct {
	// Group names the executor (its consumer group). Required.
	Group string
	// Topics names the ledger topic (Executed) and the actions topic the
	// executor reads (Actions). Zero fields take schemas.DefaultTopics().
	Topics schemas.Topics
	// Recent is how many keys of done records each partition remembers
	// to drop records that repeat a key at a later offset. Default
	// DefaultRecent (10,000); negative remembers none.
	Recent int
	// Key returns the idempotency key of an actions record, or "" when
	// the record has no effect of this executor. Load uses it to read the
	// recent keys back; give Read the same keys. Default: the record key.
	Key func(*kgo.Record) string
	// LoadTimeout bounds reading the recent keys back from the actions
	// partition in Load; past it the partition is loaded without them
	// (logged). Default 30s.
	LoadTimeout time.Duration
	// Logger receives warnings. Default slog.Default().
	Logger *slog.Logger
}

// Ledger holds the ledgers of the partitions an executor owns and writes
// them to the ledger topic.
type Ledger struct {
	factory ClientFactory
	opts    Options
	cl      *kgo.Client // produces ledger records
	part    partitioner

	flushMu sync.Mutex // one Flush at a time, so records are written in order
	mu      sync.Mutex
	parts   map[int32]*Partition
}

// Open returns a Ledger writing through a client of factory. Close it
// when done.
func Open(factory ClientFactory, opts Options) (*Ledger, error) {
	if opts.Group == "" {
		return nil, errors.New("ledger: no executor group given (set Options.Group)")
	}
	if factory == nil {
		return nil, errors.New("ledger: no Kafka client factory given")
	}
	def := schemas.DefaultTopics()
	if opts.Topics.Executed == "" {
		opts.Topics.Executed = def.Executed
	}
	if opts.Topics.Actions == "" {
		opts.Topics.Actions = def.Actions
	}
	switch {
	case opts.Recent == 0:
		opts.Recent = DefaultRecent
	case opts.Recent < 0:
		opts.Recent = 0
	}
	if opts.Key == nil {
		opts.Key = func(r *kgo.Record) string { return string(r.Key) }
	}
	if opts.LoadTimeout <= 0 {
		opts.LoadTimeout = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	part := partitioner{hash: kgo.StickyKeyPartitioner(nil).ForTopic(opts.Topics.Executed)}
	cl, err := factory.Client(kgo.RecordPartitioner(part), kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return &Ledger{factory: factory, opts: opts, cl: cl, part: part, parts: map[int32]*Partition{}}, nil
}

// Close closes the ledger's client. Unflushed changes are not written.
func (l *Ledger) Close() { l.cl.Close() }

// recordKey is the ledger record key of an actions partition.
func (l *Ledger) recordKey(partition int32) []byte {
	return []byte(l.opts.Group + "/" + l.opts.Topics.Actions + "/" + strconv.Itoa(int(partition)))
}

// Load reads the latest ledger record of an actions partition and the
// recent keys before its resume offset, and holds the partition until
// Drop (a partition loaded again replaces the one held). A ledger record
// that cannot be decoded is logged and ignored: the partition then
// resumes where the consumer group left off.
func (l *Ledger) Load(ctx context.Context, partition int32) (*Partition, error) {
	key := l.recordKey(partition)
	topic := l.opts.Topics.Executed
	n, err := l.partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	lp := int32(l.part.ledgerPartition(partition, key, n))
	value, err := l.latest(ctx, topic, lp, key)
	if err != nil {
		return nil, fmt.Errorf("ledger: read %s partition %d: %w", topic, lp, err)
	}
	p := newPartition(partition, key, l.opts.Recent)
	if value == nil {
		return l.hold(p), nil
	}
	r, err := decodeRecord(value)
	if err != nil {
		l.opts.Logger.Error("ledger record unreadable; the partition resumes at its consumer group offset, and effects done above it may be repeated",
			"topic", topic, "key", string(key), "err", err)
		return l.hold(p), nil
	}
	p.load(r)
	if err := l.readRecent(ctx, p, r.next); err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		l.opts.Logger.Warn("recent keys not read back; a repeated action record older than the resume offset may be executed again",
			"topic", l.opts.Topics.Actions, "partition", partition, "err", err)
	}
	return l.hold(p), nil
}

func (l *Ledger) hold(p *Partition) *Partition {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.parts[p.id] = p
	return p
}

// partitions returns the partition count of topic.
func (l *Ledger) partitions(ctx context.Context, topic string) (int, error) {
	ends, err := kadm.NewClient(l.cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("ledger: partitions of %s (the ledger topic: compacted, partitioned like the actions topic): %w", topic, err)
	}
	n := 0
	ends.Each(func(o kadm.ListedOffset) { n = max(n, int(o.Partition)+1) })
	if n == 0 {
		return 0, fmt.Errorf("ledger: topic %s has no partitions", topic)
	}
	return n, nil
}

// bounds returns the start and end offsets of topic/partition.
func (l *Ledger) bounds(ctx context.Context, topic string, partition int32) (start, end int64, err error) {
	adm := kadm.NewClient(l.cl)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	s, ok1 := starts.Lookup(topic, partition)
	e, ok2 := ends.Lookup(topic, partition)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("%s has no partition %d", topic, partition)
	}
	return s.Offset, e.Offset, nil
}

// latest returns the value of the last record with key in a ledger
// partition, nil if there is none. It reads back from the end in
// windows that double, so it costs what was written since the key's
// last record, however long ago compaction ran.
func (l *Ledger) latest(ctx context.Context, topic string, partition int32, key []byte) ([]byte, error) {
	start, end, err := l.bounds(ctx, topic, partition)
	if err != nil {
		return nil, err
	}
	window := int64(1024)
	for hi := end; hi > start; window *= 2 {
		lo := max(start, hi-window)
		var value []byte
		err := readRange(ctx, l.factory, topic, partition, lo, hi, func(r *kgo.Record) {
			if string(r.Key) == string(key) {
				value = r.Value
			}
		})
		if err != nil || value != nil {
			return value, err
		}
		hi = lo
	}
	return nil, nil
}

// readRecent adds to p's recent keys those of the actions records in
// the Recent offsets before next (all done).
func (l *Ledger) readRecent(ctx context.Context, p *Partition, next int64) error {
	if l.opts.Recent == 0 || next <= 0 {
		return nil
	}
	topic := l.opts.Topics.Actions
	start, _, err := l.bounds(ctx, topic, p.id)
	if err != nil {
		return err
	}
	from := max(start, next-int64(l.opts.Recent))
	if from >= next {
		return nil // removed by retention
	}
	ctx, cancel := context.WithTimeout(ctx, l.opts.LoadTimeout)
	defer cancel()
	var keys []string
	err = readRange(ctx, l.factory, topic, p.id, from, next, func(r *kgo.Record) {
		if k := l.opts.Key(r); k != "" {
			keys = append(keys, k)
		}
	})
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range keys {
		p.recent.add(k)
	}
	return nil
}

// readRange passes the committed records of topic/partition in
// [from, to) to fn. It stops at the first record at or past to-1, so a
// record there or later must exist (the last done record below a resume
// offset; the last record of a partition); ctx bounds the wait for it
// otherwise.
func readRange(ctx context.Context, factory ClientFactory, topic string, partition int32, from, to int64, fn func(*kgo.Record)) error {
	cl, err := factory.Client(
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s/%d [%d, %d): %w", topic, partition, from, to, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fmt.Errorf("read %s/%d: %w", topic, partition, ferr)
		}
		last := false
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < to {
				fn(r)
			}
			last = last || r.Offset >= to-1
		})
		if last {
			return nil
		}
	}
}

// Drop forgets partitions (revoked or lost) without writing them: call
// Flush first to keep what changed.
func (l *Ledger) Drop(partitions ...int32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range partitions {
		delete(l.parts, p)
	}
}

// Flush writes the ledger record of every held partition that changed
// since its last flush and waits until the log acknowledged them all. It
// returns the resume offset each written record holds, by partition.
func (l *Ledger) Flush(ctx context.Context) (map[int32]int64, error) {
	l.flushMu.Lock()
	defer l.flushMu.Unlock()
	l.mu.Lock()
	parts := make([]*Partition, 0, len(l.parts))
	for _, p := range l.parts {
		parts = append(parts, p)
	}
	l.mu.Unlock()
	type written struct {
		p       *Partition
		next    int64
		version uint64
	}
	var recs []*kgo.Record
	var ws []written
	for _, p := range parts {
		r, v, ok := p.snapshot()
		if !ok {
			continue
		}
		recs = append(recs, &kgo.Record{Topic: l.opts.Topics.Executed, Partition: p.id, Key: p.key, Value: r.appendTo(nil)})
		ws = append(ws, written{p, r.next, v})
	}
	if len(recs) == 0 {
		return nil, nil
	}
	if err := l.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return nil, fmt.Errorf("ledger: write %d records to %s: %w", len(recs), l.opts.Topics.Executed, err)
	}
	out := make(map[int32]int64, len(ws))
	for _, w := range ws {
		w.p.flushedAt(w.version)
		out[w.p.id] = w.next
	}
	return out, nil
}

// partitioner sends each ledger record to ledgerPartition of the actions
// partition set on it. hash is franz-go's default partitioner (for keyed
// records it only hashes the key).
type partitioner struct{ hash kgo.TopicPartitioner }

// ledgerPartition is the ledger topic partition (of n) holding the record
// of an actions partition: the same number when the ledger topic has it,
// else the key's hash as franz-go's default partitioner computes it.
func (p partitioner) ledgerPartition(actions int32, key []byte, n int) int {
	if actions >= 0 && int(actions) < n {
		return int(actions)
	}
	return p.hash.Partition(&kgo.Record{Key: key}, n)
}

func (p partitioner) ForTopic(string) kgo.TopicPartitioner { return p }

func (partitioner) RequiresConsistency(*kgo.Record) bool { return true }

func (p partitioner) Partition(r *kgo.Record, n int) int {
	return p.ledgerPartition(r.Partition, r.Key, n)
}
