package processors

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/internal/eventlog"
)

// What iotpipe rebuild needs of the runtime on a stopped node: its state
// directory, to read and replace partitions' state, and the changelog,
// to read a partition's state from it and to correct it. State maps here
// are keyed as the changelog is: the state key without the partition
// prefix ("<processor>\x00<key>", the runtime's next offset under
// OffsetKey).

// OffsetKey is the state key (without the partition prefix) of a
// partition's next offset, in the local state and the changelog.
const OffsetKey = "\x00offset"

// NextOffset returns the next offset a partition's state records, -1
// when it records none.
func NextOffset(state map[string][]byte) int64 {
	v, ok := state[OffsetKey]
	if !ok || len(v) != 8 {
		return -1
	}
	return int64(binary.BigEndian.Uint64(v))
}

// StateDir is a stopped runner's state directory, opened to read and
// replace partitions' state. It holds the directory's lock: a runner
// cannot open it meanwhile, nor can it be opened while one runs.
type StateDir struct{ db *pebble.DB }

// OpenStateDir opens (or creates) the state directory dir.
func OpenStateDir(dir string) (*StateDir, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", dir, err)
	}
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		return nil, fmt.Errorf("open state %s (is iotpipe running on it? stop it first): %w", dir, err)
	}
	return &StateDir{db: db}, nil
}

// Close closes the directory.
func (s *StateDir) Close() error { return s.db.Close() }

// Partition returns partition's state (the local changelog checkpoint
// left out) and the changelog end it is current with (-1: unknown).
func (s *StateDir) Partition(partition int32) (state map[string][]byte, changelogEnd int64, err error) {
	return partitionState(s.db, partition)
}

func partitionState(db *pebble.DB, partition int32) (state map[string][]byte, changelogEnd int64, err error) {
	snap, err := snapshot(db, partition)
	if err != nil {
		return nil, 0, err
	}
	cp := string(changelogEndKey(partition)[len(partitionPrefix(partition)):])
	delete(snap, cp)
	state = make(map[string][]byte, len(snap))
	for k, v := range snap {
		state[k] = []byte(v)
	}
	end, err := readChangelogEnd(db, partition)
	return state, end, err
}

// Replace sets the keys of the named processors in partition ("" names
// the runtime's own, the next offset; no names: every key) to those of
// state, and the changelog end the partition is current with, in one
// synced batch.
func (s *StateDir) Replace(partition int32, names []string, state map[string][]byte, changelogEnd int64) error {
	return replaceState(s.db, partition, names, state, changelogEnd)
}

func replaceState(db *pebble.DB, partition int32, names []string, state map[string][]byte, changelogEnd int64) error {
	b := db.NewBatch()
	defer b.Close()
	lo := partitionPrefix(partition)
	var ranges [][]byte
	if len(names) == 0 {
		ranges = append(ranges, lo)
	}
	for _, n := range names {
		ranges = append(ranges, processorPrefix(partition, n))
	}
	for _, r := range ranges {
		if err := b.DeleteRange(r, prefixEnd(r), nil); err != nil {
			return err
		}
	}
	for k, v := range state {
		key := append(append([]byte(nil), lo...), k...)
		if !inRanges(key, ranges) {
			continue
		}
		if err := b.Set(key, v, nil); err != nil {
			return err
		}
	}
	if err := b.Set(changelogEndKey(partition), encodeOffset(changelogEnd), nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("replace state of partition %d: %w", partition, err)
	}
	return nil
}

func inRanges(key []byte, ranges [][]byte) bool {
	for _, r := range ranges {
		if len(key) >= len(r) && string(key[:len(r)]) == string(r) {
			return true
		}
	}
	return false
}

// ChangelogState reads partition of the changelog topic: the state it
// holds (the last value of each key; deleted keys left out) and its end
// offset.
func ChangelogState(ctx context.Context, factory ClientFactory, topic string, partition int32) (map[string][]byte, int64, error) {
	state := map[string][]byte{}
	end, err := eventlog.ReadPartition(ctx, factory.Client, topic, partition, 0, func(r *kgo.Record) error {
		if r.Value == nil {
			delete(state, string(r.Key))
		} else {
			state[string(r.Key)] = r.Value
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("read changelog %s/%d: %w", topic, partition, err)
	}
	return state, end, nil
}

// TransactionalID is the transactional id of partition's producer: a
// new owner of the partition fences the old one with it.
func TransactionalID(group, input string, partition int32) string {
	return fmt.Sprintf("%s/%s/%d", group, input, partition)
}

// WriteChangelog writes kv (a nil value deletes its key) to partition of
// the changelog of the runner opts describe, in one transaction under
// the partition's transactional id, so an owner of the partition still
// running is fenced (it starts the partition again and restores it from
// the changelog). It returns the changelog partition's end after.
func WriteChangelog(ctx context.Context, factory ClientFactory, opts RunnerOptions, partition int32, kv map[string][]byte) (int64, error) {
	opts.defaults()
	topic := opts.Topics.Changelog
	prod, err := factory.Client(kgo.TransactionalID(TransactionalID(opts.Group, opts.Input, partition)),
		kgo.TransactionTimeout(opts.TransactionTimeout), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return 0, err
	}
	defer prod.Close()
	if err := produceCommitted(ctx, prod, changelogRecords(topic, partition, kv)); err != nil {
		return 0, fmt.Errorf("changelog %s/%d: %w", topic, partition, err)
	}
	// The end after the commit marker: what a runner compares its
	// checkpoint with.
	return eventlog.EndOffset(ctx, factory.Client, topic, partition)
}

// changelogRecords are the records of kv (a nil value deletes its key)
// for partition of the changelog topic.
func changelogRecords(topic string, partition int32, kv map[string][]byte) []*kgo.Record {
	recs := make([]*kgo.Record, 0, len(kv))
	for k, v := range kv {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: partition, Key: []byte(k), Value: v})
	}
	return recs
}

// produceCommitted produces recs in one transaction of prod, aborted
// when a record fails.
func produceCommitted(ctx context.Context, prod *kgo.Client, recs []*kgo.Record) error {
	if err := prod.BeginTransaction(); err != nil {
		return err
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		_ = prod.EndTransaction(context.WithoutCancel(ctx), kgo.TryAbort)
		return err
	}
	if err := prod.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
