package webhook

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestOffsetsCommitInOrder(t *testing.T) {
	o := newOffsets()
	var tk []*ticket
	for off := int64(10); off < 15; off++ {
		tk = append(tk, o.add(&kgo.Record{Topic: "a", Partition: 0, Offset: off, LeaderEpoch: 2}))
	}
	other := o.add(&kgo.Record{Topic: "a", Partition: 1, Offset: 0})
	steps := []struct {
		finish []*ticket
		want   map[int32]int64 // partition -> uncommitted next offset; absent = nothing to commit
	}{
		{nil, map[int32]int64{}},
		{[]*ticket{tk[1], tk[2]}, map[int32]int64{}}, // 10 still pending
		{[]*ticket{tk[0]}, map[int32]int64{0: 13}},
		{[]*ticket{tk[4], other}, map[int32]int64{0: 13, 1: 1}},
		{[]*ticket{tk[3]}, map[int32]int64{0: 15, 1: 1}},
	}
	for i, s := range steps {
		for _, t := range s.finish {
			t.finish()
		}
		got := o.uncommitted()["a"]
		if len(got) != len(s.want) {
			t.Fatalf("step %d: uncommitted %v, want %v", i, got, s.want)
		}
		for p, off := range s.want {
			if got[p].Offset != off {
				t.Fatalf("step %d: partition %d next %d, want %d", i, p, got[p].Offset, off)
			}
		}
	}
	if got := o.uncommitted()["a"][0].Epoch; got != 2 {
		t.Errorf("epoch %d, want the record's leader epoch 2", got)
	}
	o.committed(o.uncommitted())
	if got := o.uncommitted(); len(got) != 0 {
		t.Errorf("after commit: uncommitted %v, want none", got)
	}
}

func TestOffsetsRemove(t *testing.T) {
	o := newOffsets()
	a := o.add(&kgo.Record{Topic: "a", Partition: 0, Offset: 0})
	b := o.add(&kgo.Record{Topic: "a", Partition: 0, Offset: 1})
	a.finish()
	got := o.remove(map[string][]int32{"a": {0}})
	if got["a"][0].Offset != 1 {
		t.Fatalf("remove returned %v, want next offset 1", got)
	}
	if !b.dead() {
		t.Fatal("ticket of a removed partition is not dead")
	}
	b.finish() // must not resurrect the partition
	if got := o.uncommitted(); len(got) != 0 {
		t.Fatalf("uncommitted after remove = %v, want none", got)
	}
	// The partition comes back: fresh tracking from the redelivered offset.
	c := o.add(&kgo.Record{Topic: "a", Partition: 0, Offset: 1})
	c.finish()
	if got := o.uncommitted()["a"][0].Offset; got != 2 {
		t.Fatalf("after reassignment next = %d, want 2", got)
	}
}
