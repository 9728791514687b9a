package ingest

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DeliverOutbound commits the offsets of what it routed after each poll,
// not on a timer: a node killed after routing a command does not route
// it again at its next start. The consumer is made as `iotpipe run`
// makes it (kgo.DisableAutoCommit); before, routed messages were
// committed only by the 5s autocommit, which a kill -9 skips.
func TestOutboundCommitsWhatItRouted(t *testing.T) {
	r := newRig(t, Options{})
	topic := r.srv.opts.Topics.Outbound
	for i := range 5 {
		rec := &kgo.Record{Topic: topic, Key: []byte{byte('a' + i)}, Value: []byte(`{}`)}
		if err := r.prod.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := r.log.Client(kgo.ConsumeTopics(topic), kgo.ConsumerGroup(r.srv.OutboundGroup()),
		kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.srv.DeliverOutbound(ctx, cl) }()
	defer func() {
		cancel()
		<-done
		cl.Close()
	}()

	adm := kadm.NewClient(r.prod)
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var committed kadm.OffsetResponses
	waitFor(t, "the routed messages' offsets committed", func() bool {
		committed, err = adm.FetchOffsets(context.Background(), r.srv.OutboundGroup())
		if err != nil {
			return false
		}
		all := true
		ends.Each(func(o kadm.ListedOffset) {
			got, ok := committed.Lookup(o.Topic, o.Partition)
			all = all && (o.Offset == 0 || ok && got.At == o.Offset)
		})
		return all
	})
}
