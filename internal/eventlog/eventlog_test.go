package eventlog

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestEmbeddedPersistsAcrossRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	opts := Options{DataDir: dir, Port: -1, Partitions: 3}
	l, err := Open(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := l.Client(kgo.DefaultProduceTopic(l.Topics().Events))
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := 0; i < n; i++ {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("thing"), Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	l.Close()

	l, err = Open(ctx, opts) // topics exist now: EnsureTopics must not fail
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer l.Close()
	cl, err = l.Client(kgo.ConsumeTopics(l.Topics().Events), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := 0
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for got < n {
		fs := cl.PollFetches(cctx)
		if cctx.Err() != nil {
			t.Fatalf("read back %d of %d records", got, n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Value[0] != byte(got) {
				t.Errorf("record %d has value %d", got, r.Value[0])
			}
			got++
		})
	}
	adm := kadm.NewClient(cl)
	td, err := adm.ListTopics(ctx, l.Topics().All()...)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range l.Topics().All() {
		if d, ok := td[topic]; !ok || len(d.Partitions) != 3 {
			t.Errorf("topic %s: %+v", topic, td[topic])
		}
	}
}
