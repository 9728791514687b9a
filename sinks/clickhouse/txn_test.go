package clickhouse

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestSinkReadCommitted produces derived records in Kafka transactions,
// as the processors do: an aborted transaction's records never become
// rows, a committed one's do, and the sink's committed offsets reach the
// end of each partition across the offsets the transaction markers and
// the aborted records take.
func TestSinkReadCommitted(t *testing.T) {
	ctx := context.Background()
	conn, dsn := freshDB(t)
	c := newCluster(t, 2)
	txp, err := c.Client(kgo.TransactionalID("test-processor"), kgo.DefaultProduceTopic("iotpipe.anomalies"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer txp.Close()
	ts := time.Now().UnixMilli()
	anomaly := func(rule string, i int) *kgo.Record {
		return &kgo.Record{Partition: int32(i % 2), Key: fmt.Appendf(nil, "thing-%d", i), Value: fmt.Appendf(nil,
			`{"thing":"thing-%d","rule":%q,"metric":"temp","value":%d,"score":4,"time":%d}`, i, rule, i, ts)}
	}
	txn := func(commit kgo.TransactionEndTry, rule string, n int) {
		t.Helper()
		if err := txp.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := txp.ProduceSync(ctx, anomaly(rule, i)).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := txp.EndTransaction(ctx, commit); err != nil {
			t.Fatal(err)
		}
	}
	txn(kgo.TryAbort, "aborted", 4)
	txn(kgo.TryCommit, "committed", 6)
	txn(kgo.TryAbort, "aborted", 2) // the partitions end with an abort marker

	m := &countingMetrics{}
	s := startSink(t, c, dsn, "g", m)
	defer s.Stop()
	waitFor(t, "committed rows", 30*time.Second, func() bool { return m.inserted.Load() >= 6 })

	adm := kadm.NewClient(c.prod)
	ends, err := adm.ListEndOffsets(ctx, "iotpipe.anomalies")
	if err != nil {
		t.Fatal(err)
	}
	atEnd := func() bool {
		committed, err := adm.FetchOffsets(ctx, "g")
		if err != nil {
			return false
		}
		done := true
		ends.Each(func(e kadm.ListedOffset) {
			o, ok := committed.Lookup(e.Topic, e.Partition)
			done = done && ok && o.At == e.Offset
		})
		return done
	}
	for deadline := time.Now().Add(30 * time.Second); !atEnd() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	if !atEnd() {
		t.Errorf("the group's committed offsets did not reach the ends of the partitions %v", ends.Offsets())
	}
	var aborted, committed uint64
	if err := conn.QueryRow(ctx, "SELECT countIf(rule = 'aborted'), countIf(rule = 'committed') FROM anomalies").Scan(&aborted, &committed); err != nil {
		t.Fatal(err)
	}
	if aborted != 0 || committed != 6 {
		t.Errorf("rows of the aborted transactions %d, of the committed one %d; want 0 and 6", aborted, committed)
	}
	if n := m.dlq.Load(); n != 0 {
		t.Errorf("%d records sent to the DLQ (transaction markers are not records to store)", n)
	}
}
