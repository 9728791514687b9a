package relay

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkRun relays b.N 200-byte records of one partition through an
// in-process kfake broker: poll, translate, produce, commit. It measures
// the loop with a broker that never refuses, so most of the time is the
// broker's and the client's.
func BenchmarkRun(b *testing.B) {
	c, err := kfake.NewCluster(kfake.SeedTopics(1, actions, out))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	addrs := c.ListenAddrs()
	seed, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		b.Fatal(err)
	}
	defer seed.Close()
	value := make([]byte, 200)
	for i := 0; i < b.N; i += 1000 {
		recs := make([]*kgo.Record, 0, 1000)
		for j := i; j < min(i+1000, b.N); j++ {
			recs = append(recs, &kgo.Record{Topic: actions, Value: value})
		}
		if err := seed.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(actions),
		kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := 0
	translate := func(polled []*kgo.Record) ([]Output, func()) {
		o := make([]Output, len(polled))
		for i, r := range polled {
			o[i] = Output{Record: &kgo.Record{Topic: out, Key: r.Key, Value: r.Value}, Source: r}
		}
		return o, func() {
			if seen += len(polled); seen >= b.N {
				cancel() // the last poll is produced; its commit may be cut short
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	Run(ctx, cl, Options{}, translate)
	b.StopTimer()
	ends, err := kadm.NewClient(seed).ListEndOffsets(context.Background(), out)
	if err != nil {
		b.Fatal(err)
	}
	if o, _ := ends.Lookup(out, 0); o.Offset != int64(b.N) {
		b.Fatalf("%s holds %d records, want %d", out, o.Offset, b.N)
	}
}
