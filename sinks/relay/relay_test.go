package relay

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	actions = "actions"
	out     = "out"
	missing = "missing" // not created unless a case says so
	dlq     = "dlq"
	group   = "relay-test"
)

// counts is what the callbacks saw, guarded for the test goroutine.
type counts struct {
	mu      sync.Mutex
	acked   []*kgo.Record
	refused []error
	after   int
}

func (c *counts) get() (acked []*kgo.Record, refused, after int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked, len(c.refused), c.after
}

func TestRun(t *testing.T) {
	tests := []struct {
		name       string
		target     string // topic every action is translated to
		refuse     int    // produce requests to target the broker refuses first
		deadLetter bool
		// createAfter creates target once this many refusals were seen.
		createAfter int
		// cancelAfter cancels ctx once this many refusals were seen.
		cancelAfter int
		wantTopic   string // where the outputs end up; "" none
		wantRefused bool
		wantCommit  bool
	}{
		{name: "produced and committed", target: out, wantTopic: out, wantCommit: true},
		{name: "refused produce retried until acknowledged", target: out, refuse: 2, wantTopic: out, wantRefused: true, wantCommit: true},
		{name: "unknown topic dead-lettered", target: missing, deadLetter: true, wantTopic: dlq, wantCommit: true},
		{name: "unknown topic retried without DeadLetter", target: missing, createAfter: 2, wantTopic: missing, wantRefused: true, wantCommit: true},
		{name: "ctx cancel returns without committing", target: missing, cancelAfter: 1, wantRefused: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.SeedTopics(2, actions, out, dlq))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			addrs := c.ListenAddrs()
			admCl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err != nil {
				t.Fatal(err)
			}
			defer admCl.Close()
			adm := kadm.NewClient(admCl)
			const n = 5
			var in []*kgo.Record
			for i := range n {
				in = append(in, &kgo.Record{Topic: actions, Partition: int32(i % 2), Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)})
			}
			if err := admCl.ProduceSync(context.Background(), in...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			if tt.refuse > 0 {
				td, err := adm.ListTopics(context.Background(), tt.target)
				if err != nil || td.Error() != nil {
					t.Fatalf("look up %s: %v %v", tt.target, err, td.Error())
				}
				id, refusals := td[tt.target].ID, 0
				c.ControlKey(int16(kmsg.Produce), func(kr kmsg.Request) (kmsg.Response, error, bool) {
					return refuseProduce(c, kr, tt.target, id, &refusals, tt.refuse)
				})
			}

			cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(actions),
				kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(), kgo.UnknownTopicRetries(1),
				kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var cnt counts
			var created sync.Once
			opts := Options{
				RetryBackoff: 5 * time.Millisecond,
				OnProduced: func(acked []*kgo.Record) {
					cnt.mu.Lock()
					cnt.acked = append(cnt.acked, acked...)
					cnt.mu.Unlock()
				},
				OnRefused: func(refused []kgo.ProduceResult) {
					cnt.mu.Lock()
					for _, r := range refused {
						cnt.refused = append(cnt.refused, r.Err)
					}
					seen := len(cnt.refused)
					cnt.mu.Unlock()
					if tt.createAfter > 0 && seen >= tt.createAfter {
						created.Do(func() {
							if _, err := adm.CreateTopic(context.Background(), 2, 1, nil, tt.target); err != nil {
								t.Errorf("create %s: %v", tt.target, err)
							}
						})
					}
					if tt.cancelAfter > 0 && seen >= tt.cancelAfter {
						cancel()
					}
				},
			}
			if tt.deadLetter {
				opts.DeadLetter = func(src *kgo.Record, err error) *kgo.Record {
					return &kgo.Record{Topic: dlq, Key: src.Key, Value: src.Value, Headers: []kgo.RecordHeader{{Key: "reason", Value: []byte(err.Error())}}}
				}
			}
			translate := func(polled []*kgo.Record) ([]Output, func()) {
				var o []Output
				for _, r := range polled {
					o = append(o, Output{Record: &kgo.Record{Topic: tt.target, Key: r.Key, Value: append([]byte("out-"), r.Value...)}, Source: r})
				}
				return o, func() {
					cnt.mu.Lock()
					cnt.after++
					cnt.mu.Unlock()
				}
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Run(ctx, cl, opts, translate)
			}()

			if tt.wantCommit {
				waitCommitted(t, adm, map[int32]int64{0: 3, 1: 2})
				cancel()
			}
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("Run did not return after ctx ended")
			}

			acked, refused, after := cnt.get()
			if tt.wantRefused != (refused > 0) {
				t.Errorf("refusals = %d (%v), want some: %v", refused, cnt.refused, tt.wantRefused)
			}
			if tt.refuse > 0 && refused < tt.refuse {
				t.Errorf("refusals = %d, want at least the %d refused requests", refused, tt.refuse)
			}
			if tt.deadLetter && refused > 0 {
				t.Errorf("dead-lettered outputs were also retried: %v", cnt.refused)
			}
			for _, err := range cnt.refused {
				if tt.target == missing && !strings.Contains(err.Error(), kerr.UnknownTopicOrPartition.Message) {
					t.Errorf("refusal %v, want unknown topic", err)
				}
			}
			if !tt.wantCommit {
				offs, err := adm.FetchOffsets(context.Background(), group)
				if err != nil {
					t.Fatal(err)
				}
				if o, ok := offs.Lookup(actions, 0); ok && o.At >= 0 {
					t.Errorf("partition 0 committed at %d after ctx cancel", o.At)
				}
				if o, ok := offs.Lookup(actions, 1); ok && o.At >= 0 {
					t.Errorf("partition 1 committed at %d after ctx cancel", o.At)
				}
				if after != 0 {
					t.Errorf("after ran %d times although nothing was acknowledged", after)
				}
				return
			}
			if len(acked) != n || after == 0 {
				t.Errorf("OnProduced saw %d records (want %d), after ran %d times", len(acked), n, after)
			}
			// Exactly the n outputs reached wantTopic, none elsewhere.
			for _, topic := range []string{out, dlq, missing} {
				want := int64(0)
				if topic == tt.wantTopic {
					want = n
				}
				if got := endOffsets(t, adm, topic); got != want {
					t.Errorf("%s holds %d records, want %d", topic, got, want)
				}
			}
			// What OnProduced reports is what was written.
			for _, r := range acked {
				wantValue, reason := "out-v", ""
				if tt.deadLetter {
					wantValue, reason = "v", string(r.Headers[0].Value)
				}
				if r.Topic != tt.wantTopic || !strings.HasPrefix(string(r.Value), wantValue) {
					t.Errorf("acknowledged %s: %q, want %s: %q...", r.Topic, r.Value, tt.wantTopic, wantValue)
				}
				if tt.deadLetter && !strings.Contains(reason, "produce to missing: ") {
					t.Errorf("dead letter reason %q", reason)
				}
			}
		})
	}
}

// refuseProduce answers the first limit produce requests that write to
// topic (by name or, from produce v13 on, by id) with INVALID_RECORD (not retried by the client) for every
// partition, and lets every other request through.
func refuseProduce(c *kfake.Cluster, kr kmsg.Request, topic string, id [16]byte, refusals *int, limit int) (kmsg.Response, error, bool) {
	req := kr.(*kmsg.ProduceRequest)
	hit := false
	for _, t := range req.Topics {
		hit = hit || t.Topic == topic || t.TopicID == id
	}
	if !hit || *refusals >= limit {
		return nil, nil, false
	}
	*refusals++
	c.KeepControl()
	resp := req.ResponseKind().(*kmsg.ProduceResponse)
	resp.Version = req.Version
	for _, t := range req.Topics {
		rt := kmsg.NewProduceResponseTopic()
		rt.Topic = t.Topic
		rt.TopicID = t.TopicID
		for _, p := range t.Partitions {
			rp := kmsg.NewProduceResponseTopicPartition()
			rp.Partition = p.Partition
			rp.ErrorCode = kerr.InvalidRecord.Code
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil, true
}

func waitCommitted(t *testing.T, adm *kadm.Client, want map[int32]int64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		offs, err := adm.FetchOffsets(context.Background(), group)
		ok := err == nil
		for p, at := range want {
			o, found := offs.Lookup(actions, p)
			ok = ok && found && o.At == at
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("offsets not committed to %v: %v %v", want, offs, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// endOffsets is how many records topic holds (0 when it does not exist).
func endOffsets(t *testing.T, adm *kadm.Client, topic string) int64 {
	t.Helper()
	ends, err := adm.ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			n += o.Offset
		}
	})
	return n
}
