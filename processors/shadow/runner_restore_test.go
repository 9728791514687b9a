package shadow_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A processor node that loses its state after the events topic dropped
// its oldest records (retention; here DeleteRecords) gets every shadow
// back from the runtime's changelog (classic and named), with the same
// document and version, and carries on with new updates from there.
func TestRunnerRestoresShadowsPastRetention(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := logtest.Quiet()
	l := logtest.Open(t, 2)
	topics := l.Topics()
	prod, err := l.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	adm := kadm.NewClient(prod)
	const things = 20
	update := func(round int) {
		t.Helper()
		var recs []*kgo.Record
		for i := range things {
			thing := fmt.Sprintf("lamp-%d", i)
			// The classic shadow and a named one (its changelog key,
			// "thing/name", hashes unlike the events' key).
			for _, sh := range []string{"", "name/cfg/"} {
				env := schemas.Envelope{Type: schemas.EventPublish, Topic: "$aws/things/" + thing + "/shadow/" + sh + "update", ClientID: thing, QoS: 1, ReceivedAt: time.Now().UnixNano()}
				recs = append(recs, &kgo.Record{Topic: topics.Events, Key: []byte(thing), Headers: env.Headers(),
					Value: fmt.Appendf(nil, `{"state":{"reported":{"round":%d,"lamp":%d}}}`, round, i)})
			}
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// run runs a Runner over dir until every thing's shadow has version
	// want, and returns the documents.
	run := func(dir string, want int64) map[string]string {
		t.Helper()
		r, err := processors.NewRunner(l, []processors.Processor{shadow.New(shadow.Options{Topics: topics})},
			processors.RunnerOptions{Topics: topics, StateDir: dir, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		docs := map[string]string{}
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			all := true
			for i := range things * 2 {
				thing, name := fmt.Sprintf("lamp-%d", i/2), []string{"", "cfg"}[i%2]
				s, ok, err := shadow.Read(func(k []byte) ([]byte, bool, error) { return r.Read(shadow.Name, k) }, thing, name)
				if err != nil {
					t.Fatal(err)
				}
				if !ok || s.Version != want {
					all = false
					break
				}
				b, _, _ := r.Read(shadow.Name, shadow.Key(thing, name))
				docs[string(shadow.Key(thing, name))] = string(b)
			}
			if all {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("shadows did not reach version %d", want)
			}
		}
		stop()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return docs
	}

	for round := range 5 {
		update(round)
	}
	before := run(t.TempDir(), 5)
	// Retention: the events topic loses everything up to now.
	ends, err := adm.ListEndOffsets(ctx, topics.Events)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.DeleteRecords(ctx, ends.Offsets()); err != nil {
		t.Fatal(err)
	}
	starts, err := adm.ListStartOffsets(ctx, topics.Events)
	if err != nil {
		t.Fatal(err)
	}
	starts.Each(func(o kadm.ListedOffset) {
		if e, _ := ends.Lookup(o.Topic, o.Partition); o.Offset != e.Offset {
			t.Fatalf("partition %d starts at %d after deleting to %d", o.Partition, o.Offset, e.Offset)
		}
	})
	update(5)
	// A node with no state: the shadows come back from the changelog and
	// take the new update as their sixth version.
	after := run(t.TempDir(), 6)
	if len(after) != 2*things {
		t.Fatalf("%d shadows after the restore, want %d", len(after), 2*things)
	}
	for thing, doc := range before {
		if after[thing] == doc {
			t.Fatalf("%s did not take the new update", thing)
		}
	}
}
