package eventlog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// NewClientFunc makes a franz-go client with extra options (Log.Client
// and any ClientFactory's Client method have this shape).
type NewClientFunc func(opts ...kgo.Opt) (*kgo.Client, error)

// ErrStop, returned by a read callback, ends the read early without an
// error.
var ErrStop = errors.New("stop reading")

// ReadToEnd reads topic from its start up to the end offsets it has when
// called, passing each record to fn (in order within a partition). It is
// how tests, rebuilds and replays read "the whole log so far". Records
// of aborted transactions are not passed, nor are transaction markers;
// the end of a partition is its last stable offset (records of a
// transaction still open are not read).
func ReadToEnd(ctx context.Context, newClient NewClientFunc, topic string, fn func(*kgo.Record) error) error {
	return ReadPartitionsToEnd(ctx, newClient, topic, nil, fn)
}

// ReadPartitionsToEnd is ReadToEnd of the partitions of topic that keep
// reports true for (every partition when keep is nil), one partition
// after another.
func ReadPartitionsToEnd(ctx context.Context, newClient NewClientFunc, topic string, keep func(partition int32) bool, fn func(*kgo.Record) error) error {
	ends, err := committedEnds(ctx, newClient, topic)
	if err != nil {
		return err
	}
	ps := make([]int32, 0, len(ends))
	for p, end := range ends {
		if end > 0 && (keep == nil || keep(p)) {
			ps = append(ps, p)
		}
	}
	slices.Sort(ps)
	stopped := false
	for _, p := range ps {
		_, err := ReadPartition(ctx, newClient, topic, p, 0, func(r *kgo.Record) error {
			err := fn(r)
			if errors.Is(err, ErrStop) {
				stopped = true
			}
			return err
		})
		if err != nil || stopped {
			return err
		}
	}
	return nil
}

// ReadPartition reads partition of topic from offset from (0: its start)
// up to its last stable offset when called, passing each committed
// record to fn in order, and returns that end offset. Unlike ReadToEnd it
// also ends when the partition's last records belong to a transaction
// that was aborted without a marker (a broker that crashed with it
// open): it fetches with raw requests and knows where each response
// leaves it, rather than waiting for a record at the end.
func ReadPartition(ctx context.Context, newClient NewClientFunc, topic string, partition int32, from int64, fn func(*kgo.Record) error) (int64, error) {
	cl, err := newClient()
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		return 0, fmt.Errorf("metadata of %s: %v", topic, td.Err)
	}
	pd, ok := td.Partitions[partition]
	if !ok {
		return 0, fmt.Errorf("read %s: no partition %d", topic, partition)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	endOff, _ := ends.Lookup(topic, partition)
	end := endOff.Offset
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("start offsets of %s: %w", topic, err)
	}
	startOff, _ := starts.Lookup(topic, partition)
	pos := max(from, startOff.Offset)
	f := PartitionFetch{
		Broker: cl.Broker(int(pd.Leader)), Topic: topic, TopicID: td.ID, Partition: partition,
		MaxWait: 500 * time.Millisecond, Decompressor: kgo.DefaultDecompressor(),
	}
	stuck := 0
	for pos < end {
		fp, next, err := f.Fetch(ctx, pos)
		if err != nil {
			return 0, err
		}
		if fp.Err != nil {
			return 0, fmt.Errorf("fetch %s/%d at %d: %w", topic, partition, pos, fp.Err)
		}
		for _, rec := range fp.Records {
			if rec.Offset >= end {
				break
			}
			if err := fn(rec); err != nil {
				if errors.Is(err, ErrStop) {
					return end, nil
				}
				return 0, err
			}
		}
		if next <= pos {
			if stuck++; stuck > 20 {
				return 0, fmt.Errorf("fetch %s/%d: no progress at offset %d (end %d)", topic, partition, pos, end)
			}
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			continue
		}
		stuck = 0
		pos = next
	}
	return end, nil
}

// EndOffset returns the high watermark of partition of topic: the offset
// the next record written there gets.
func EndOffset(ctx context.Context, newClient NewClientFunc, topic string, partition int32) (int64, error) {
	cl, err := newClient()
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	o, ok := ends.Lookup(topic, partition)
	if !ok {
		return 0, fmt.Errorf("end offsets of %s: no partition %d", topic, partition)
	}
	return o.Offset, nil
}

// PartitionCount returns how many partitions topic has.
func PartitionCount(ctx context.Context, newClient NewClientFunc, topic string) (int32, error) {
	ends, err := committedEnds(ctx, newClient, topic)
	if err != nil {
		return 0, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	var n int32
	for p := range ends {
		n = max(n, p+1)
	}
	return n, nil
}

// committedEnds returns the last stable offset of every partition of
// topic.
func committedEnds(ctx context.Context, newClient NewClientFunc, topic string) (map[int32]int64, error) {
	cl, err := newClient()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}
