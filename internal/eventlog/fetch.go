package eventlog

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// PartitionFetch reads one partition with raw fetch requests, read
// committed, knowing after each where the next one starts (past
// transaction markers and aborted records too, which a kgo consumer
// does not tell). ReadPartition and the registry's view read this way.
type PartitionFetch struct {
	// Broker is the partition's leader.
	Broker *kgo.Broker
	// Topic and TopicID name the topic.
	Topic   string
	TopicID [16]byte
	// Partition is the partition.
	Partition int32
	// MaxWait is how long the broker waits for a record at the end of
	// the partition.
	MaxWait time.Duration
	// Decompressor decompresses batches (kgo.DefaultDecompressor()).
	Decompressor kgo.Decompressor
}

// Fetch sends one fetch at offset pos and returns the partition's
// committed data records from pos and the offset to fetch next. A
// partition-level error (for example kerr.OffsetOutOfRange) is in the
// FetchPartition's Err, beside its log start offset and high watermark;
// a request that fails is the error.
func (f PartitionFetch) Fetch(ctx context.Context, pos int64) (kgo.FetchPartition, int64, error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID = -1
	req.MaxWaitMillis = int32(f.MaxWait / time.Millisecond)
	req.MinBytes = 1
	req.MaxBytes = 32 << 20
	req.IsolationLevel = 1 // read committed
	req.SessionEpoch = -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic, rt.TopicID = f.Topic, f.TopicID
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = f.Partition, pos, 32<<20
	rp.CurrentLeaderEpoch, rp.LogStartOffset = -1, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	raw, err := f.Broker.RetriableRequest(ctx, req)
	if err != nil {
		return kgo.FetchPartition{}, pos, fmt.Errorf("fetch %s/%d at %d: %w", f.Topic, f.Partition, pos, err)
	}
	resp := raw.(*kmsg.FetchResponse)
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return kgo.FetchPartition{}, pos, fmt.Errorf("fetch %s/%d at %d: %w", f.Topic, f.Partition, pos, err)
	}
	var part *kmsg.FetchResponseTopicPartition
	for i := range resp.Topics {
		for j := range resp.Topics[i].Partitions {
			if resp.Topics[i].Partitions[j].Partition == f.Partition {
				part = &resp.Topics[i].Partitions[j]
			}
		}
	}
	if part == nil {
		return kgo.FetchPartition{}, pos, fmt.Errorf("fetch %s/%d at %d: partition missing from the response", f.Topic, f.Partition, pos)
	}
	fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
		Offset: pos, IsolationLevel: kgo.ReadCommitted(), Topic: f.Topic, Partition: f.Partition,
	}, part, f.Decompressor, nil)
	return fp, next, nil
}
