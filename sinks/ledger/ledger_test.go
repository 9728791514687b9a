package ledger

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/iotpipe/iotpipe/schemas"
)

var topics = schemas.DefaultTopics()

// produceActions writes records with the given keys to an actions
// partition and returns their offsets.
func produceActions(t *testing.T, l *eventlog.Log, partition int32, keys ...string) []int64 {
	t.Helper()
	cl, err := l.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for _, k := range keys {
		recs = append(recs, &kgo.Record{Topic: topics.Actions, Partition: partition, Key: []byte(k), Value: []byte("{}")})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	offs := make([]int64, len(recs))
	for i, r := range recs {
		offs[i] = r.Offset
	}
	return offs
}

// produceInTransaction writes records with keys to an actions partition
// in one transaction, committed or aborted.
func produceInTransaction(t *testing.T, l *eventlog.Log, partition int32, commit bool, keys ...string) {
	t.Helper()
	cl, err := l.Client(kgo.TransactionalID(fmt.Sprintf("test-%v-%d", commit, time.Now().UnixNano())), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topics.Actions, Partition: partition, Key: []byte(k), Value: []byte("{}")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T, l *eventlog.Log, o Options) *Ledger {
	t.Helper()
	if o.Group == "" {
		o.Group = "g"
	}
	o.Logger = logtest.Quiet()
	led, err := Open(l, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(led.Close)
	return led
}

func load(t *testing.T, led *Ledger, p int32) *Partition {
	t.Helper()
	lp, err := led.Load(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return lp
}

func TestLedgerSurvivesRestart(t *testing.T) {
	l := logtest.Open(t, 2)
	ctx := context.Background()
	var keys0, keys1 []string
	for i := range 10 {
		keys0 = append(keys0, fmt.Sprintf("0/%d/r/0", i))
		keys1 = append(keys1, fmt.Sprintf("1/%d/r/0", i))
	}
	offs0 := produceActions(t, l, 0, keys0...)
	offs1 := produceActions(t, l, 1, keys1...)

	a := open(t, l, Options{})
	p0, p1 := load(t, a, 0), load(t, a, 1)
	if _, ok := p0.Resume(); ok {
		t.Fatal("a new ledger has a resume offset")
	}
	for i, o := range offs0[:6] {
		if st := p0.Read(o, keys0[i]); st != Run {
			t.Fatalf("read %d: %v", o, st)
		}
		if i != 2 && i != 5 { // 2 and 5 in flight
			p0.Done(o)
		}
	}
	for i, o := range offs1 {
		p1.Read(o, keys1[i])
		p1.Done(o)
	}
	marks, err := a.Flush(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if marks[0] != offs0[2] || marks[1] != offs1[9]+1 {
		t.Fatalf("flushed resume offsets %v, want 0:%d 1:%d", marks, offs0[2], offs1[9]+1)
	}
	if again, err := a.Flush(ctx); err != nil || len(again) != 0 {
		t.Fatalf("a flush with nothing changed wrote %v (%v)", again, err)
	}
	// Done after the flush, then dropped: not written.
	p0.Done(offs0[2])
	a.Drop(0)
	if again, err := a.Flush(ctx); err != nil || len(again) != 0 {
		t.Fatalf("a dropped partition was flushed: %v (%v)", again, err)
	}

	// Another instance of the executor (a restart, or the partition moved).
	b := open(t, l, Options{})
	q0 := load(t, b, 0)
	if next, ok := q0.Resume(); !ok || next != offs0[2] {
		t.Fatalf("resume at %d (%v), want %d", next, ok, offs0[2])
	}
	for _, k := range keys0[:2] {
		if !q0.Seen(k) {
			t.Errorf("key %s below the resume offset not seen", k)
		}
	}
	want := []Status{Run, Executed, Executed, Run, Run, Run, Run, Run}
	for i, o := range offs0[2:] {
		if got := q0.Read(o, keys0[2+i]); got != want[i] {
			t.Errorf("read offset %d = %v, want %v", o, got, want[i])
		}
	}
	q1 := load(t, b, 1)
	if next, ok := q1.Resume(); !ok || next != offs1[9]+1 {
		t.Fatalf("partition 1 resumes at %d, want %d", next, offs1[9]+1)
	}
	if !q1.Seen(keys1[9]) || q1.Seen(keys0[0]) {
		t.Error("partition 1's recent keys are not its own")
	}
	// Another executor group has a ledger of its own.
	other := load(t, open(t, l, Options{Group: "other"}), 0)
	if _, ok := other.Resume(); ok {
		t.Error("another group found this group's ledger")
	}
}

// The recent keys are read back with read-committed isolation: an aborted
// action was never executed, so a later record with its key runs.
func TestLedgerRecentKeysSkipAbortedRecords(t *testing.T) {
	l := logtest.Open(t, 1)
	produceInTransaction(t, l, 0, false, "aborted")
	produceInTransaction(t, l, 0, true, "committed")
	offs := produceActions(t, l, 0, "plain")
	a := open(t, l, Options{})
	p := load(t, a, 0)
	// What the executor saw (read committed): two records, with gaps.
	cl, err := l.Client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topics.Actions: {0: kgo.NewOffset().AtStart()}}), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var seenRecs []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for len(seenRecs) < 2 && ctx.Err() == nil {
		seenRecs = append(seenRecs, cl.PollFetches(ctx).Records()...)
	}
	if len(seenRecs) != 2 || seenRecs[1].Offset != offs[0] {
		t.Fatalf("read committed gave %d records", len(seenRecs))
	}
	for _, r := range seenRecs {
		p.Read(r.Offset, string(r.Key))
		p.Done(r.Offset)
	}
	if _, err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	q := load(t, open(t, l, Options{}), 0)
	if next, _ := q.Resume(); next != offs[0]+1 {
		t.Fatalf("resume at %d, want %d", next, offs[0]+1)
	}
	if !q.Seen("committed") || !q.Seen("plain") {
		t.Error("committed keys before the resume offset not read back")
	}
	if q.Seen("aborted") {
		t.Error("the key of an aborted record was read back as executed")
	}
}

// A ledger topic with fewer partitions than the actions topic: records of
// the partitions it lacks are placed by key, and found again.
func TestLedgerTopicWithFewerPartitions(t *testing.T) {
	l := logtest.Open(t, 4)
	const small = "executed-small"
	adm := kadm.NewClient(mustClient(t, l))
	if _, err := adm.CreateTopic(context.Background(), 3, -1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, small); err != nil {
		t.Fatal(err)
	}
	o := Options{Topics: schemas.Topics{Executed: small}}
	a := open(t, l, o)
	for p := range int32(4) {
		offs := produceActions(t, l, p, fmt.Sprintf("%d/a", p), fmt.Sprintf("%d/b", p))
		lp := load(t, a, p)
		for i, off := range offs[:int(p%2)+1] {
			lp.Read(off, fmt.Sprintf("%d/%c", p, 'a'+i))
			lp.Done(off)
		}
	}
	if _, err := a.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := open(t, l, o)
	for p := range int32(4) {
		next, ok := load(t, b, p).Resume()
		if want := int64(p%2) + 1; !ok || next != want {
			t.Errorf("partition %d resumes at %d (%v), want %d", p, next, ok, want)
		}
	}
}

func TestLedgerIgnoresAnUnreadableRecord(t *testing.T) {
	l := logtest.Open(t, 1)
	a := open(t, l, Options{})
	cl := mustClient(t, l)
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topics.Executed, Partition: 0, Key: a.recordKey(0), Value: []byte{9, 9}}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	p, err := a.Load(context.Background(), 0)
	if err != nil {
		t.Fatalf("Load of an unreadable record: %v", err)
	}
	if _, ok := p.Resume(); ok {
		t.Error("an unreadable record gave a resume offset")
	}
}

func TestLedgerLoadNeedsTheTopic(t *testing.T) {
	l := logtest.Open(t, 1)
	a := open(t, l, Options{Topics: schemas.Topics{Executed: "no-such-topic"}})
	if _, err := a.Load(context.Background(), 0); err == nil {
		t.Fatal("Load without a ledger topic succeeded")
	}
}

func mustClient(t *testing.T, l *eventlog.Log) *kgo.Client {
	t.Helper()
	cl, err := l.Client(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Load reads a ledger partition back from its end: a record written long
// before (other groups wrote thousands since, nothing compacted yet) is
// found, and the latest of several is the one used.
func TestLedgerFindsItsRecordFarBack(t *testing.T) {
	l := logtest.Open(t, 1)
	offs := produceActions(t, l, 0, "a", "b", "c")
	a := open(t, l, Options{})
	p := load(t, a, 0)
	for i, o := range offs {
		p.Read(o, string(rune('a'+i)))
		p.Done(o)
		if _, err := a.Flush(context.Background()); err != nil { // three records: the last one counts
			t.Fatal(err)
		}
	}
	var others []*kgo.Record
	for i := range 5000 {
		others = append(others, &kgo.Record{Topic: topics.Executed, Partition: 0, Key: []byte(fmt.Sprintf("other-%d/%s/0", i%7, topics.Actions)),
			Value: record{next: int64(i), end: int64(i)}.appendTo(nil)})
	}
	if err := mustClient(t, l).ProduceSync(context.Background(), others...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	next, ok := load(t, open(t, l, Options{}), 0).Resume()
	if !ok || next != offs[2]+1 {
		t.Fatalf("resume at %d (%v), want %d", next, ok, offs[2]+1)
	}
}
