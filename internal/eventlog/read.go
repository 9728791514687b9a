package eventlog

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// NewClientFunc makes a franz-go client with extra options (Log.Client
// and any ClientFactory's Client method have this shape).
type NewClientFunc func(opts ...kgo.Opt) (*kgo.Client, error)

// ReadToEnd reads topic from its start up to the end offsets it has when
// called, passing each record to fn (in order within a partition). It is
// how tests, rebuilds and replays read "the whole log so far".
func ReadToEnd(ctx context.Context, newClient NewClientFunc, topic string, fn func(*kgo.Record) error) error {
	return ReadPartitionsToEnd(ctx, newClient, topic, nil, fn)
}

// ReadPartitionsToEnd is ReadToEnd of the partitions of topic that keep
// reports true for (every partition when keep is nil).
func ReadPartitionsToEnd(ctx context.Context, newClient NewClientFunc, topic string, keep func(partition int32) bool, fn func(*kgo.Record) error) error {
	cl, err := newClient()
	if err != nil {
		return err
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	cl.Close()
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	remaining := map[int32]int64{}
	start := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 && (keep == nil || keep(o.Partition)) {
			remaining[o.Partition] = o.Offset
			start[o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(remaining) == 0 {
		return nil
	}
	cl, err = newClient(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}))
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s: %w (partitions %v not read to their end)", topic, err, remaining)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fmt.Errorf("read %s: %w", topic, ferr)
		}
		for _, rec := range fs.Records() {
			end, ok := remaining[rec.Partition]
			if !ok || rec.Offset >= end {
				continue
			}
			if err := fn(rec); err != nil {
				return err
			}
			if rec.Offset == end-1 {
				delete(remaining, rec.Partition)
			}
		}
	}
	return nil
}
