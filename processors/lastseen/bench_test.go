package lastseen

import (
	"context"
	"fmt"
	"testing"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// BenchmarkProcess measures events/s through the last-seen processor,
// state included, over 1,000 things.
func BenchmarkProcess(b *testing.B) {
	ctx := context.Background()
	h, err := processors.NewHarness(Processor{})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	recs := benchRecords()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := recs[i%len(recs)]
		r.Offset = int64(i)
		if _, err := h.Record(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkProcessBatched runs events in batches of 1,000, one commit per
// batch, as the runtime does per poll.
func BenchmarkProcessBatched(b *testing.B) {
	ctx := context.Background()
	h, err := processors.NewHarness(Processor{})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	recs := benchRecords()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(recs) {
		for j, r := range recs {
			r.Offset = int64(i + j)
		}
		if _, err := h.Records(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// benchRecords returns one publish record for each of 1,000 things.
func benchRecords() []*kgo.Record {
	recs := make([]*kgo.Record, 1000)
	for i := range recs {
		env := schemas.Envelope{Type: schemas.EventPublish, Topic: "t/x", ClientID: fmt.Sprint("thing-", i), ReceivedAt: 1}
		recs[i] = &kgo.Record{Key: []byte(env.ClientID), Value: []byte(`{"v":1}`), Headers: env.Headers()}
	}
	return recs
}
