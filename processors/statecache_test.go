package processors

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// kv runs the commands in an event's payload ("set k v", "del k",
// "get k", "scan lo hi", "fail", "fatal", separated by ';') against its
// state and emits what get and scan return.
type kv struct{}

func (kv) Name() string { return "kv" }

func (kv) Process(_ context.Context, tx *Tx, ev *Event) error {
	for cmd := range strings.SplitSeq(string(ev.Payload), ";") {
		f := strings.Fields(cmd)
		switch f[0] {
		case "set":
			tx.Set([]byte(f[1]), []byte(f[2]))
		case "del":
			tx.Delete([]byte(f[1]))
		case "get":
			v, ok, err := tx.Get([]byte(f[1]))
			if err != nil {
				return err
			}
			tx.Emit(&kgo.Record{Topic: "out", Value: fmt.Appendf(nil, "%s=%s/%t", f[1], v, ok)})
		case "scan":
			var b strings.Builder
			err := tx.Scan([]byte(f[1]), []byte(f[2]), func(k, v []byte) bool {
				fmt.Fprintf(&b, "%s=%s ", k, v)
				return true
			})
			if err != nil {
				return err
			}
			tx.Emit(&kgo.Record{Topic: "out", Value: []byte(b.String())})
		case "fail":
			return errors.New("failed on purpose")
		case "fatal":
			return Fatal(errors.New("fatal on purpose"))
		}
	}
	return nil
}

func kvRecord(offset int64, payload string) *kgo.Record {
	env := schemas.Envelope{Type: schemas.EventPublish, Topic: "t"}
	return &kgo.Record{Topic: schemas.DefaultTopics().Events, Key: []byte("x"), Value: []byte(payload), Headers: env.Headers(), Offset: offset}
}

// A batch's state writes reach the changelog once per key, with the
// key's last value (a tombstone for a key last deleted), in the order of
// their first writes, then the offset; a failed call's writes never do.
func TestChangelogOncePerKey(t *testing.T) {
	h, err := NewHarness(kv{})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	batch := []*kgo.Record{
		kvRecord(0, "set b 1;set a 1"),
		kvRecord(1, "set a 2;set c 1"),
		kvRecord(2, "set d 1;fail"),
		kvRecord(3, "del c;set b 3"),
		kvRecord(4, "set c 4;del c"),
	}
	if _, err := h.Records(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range h.Changelog(0) {
		v := "<tombstone>"
		if r.Value != nil {
			v = string(r.Value)
		}
		if string(r.Key) == "\x00offset" {
			v = fmt.Sprint(r.Value)
		}
		got = append(got, strings.TrimPrefix(string(r.Key), "kv\x00")+"="+v)
	}
	want := []string{"b=3", "a=2", "c=<tombstone>", "\x00offset=[0 0 0 0 0 0 0 5]"}
	if !slices.Equal(got, want) {
		t.Fatalf("changelog %q\nwant      %q", got, want)
	}
	snap, err := h.Snapshot(0)
	if err != nil {
		t.Fatal(err)
	}
	if snap["kv\x00a"] != "2" || snap["kv\x00b"] != "3" || len(snap) != 3 {
		t.Fatalf("state %q", snap)
	}
}

// Reads within a batch see the batch's earlier writes merged with the
// committed state (Get and Scan alike, deletes hiding committed keys),
// whatever the state cache's size: a model check over random commands
// in random batches, with failing calls and aborted batches.
func TestBatchReadsSeeBatchWrites(t *testing.T) {
	for _, size := range []int{1, 4, DefaultStateCacheSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(size), 7))
			h, err := NewHarness(kv{})
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()
			h.task(0).caches[0].max = size
			committed := map[string]string{}
			key := func() string { return string(rune('a' + rng.IntN(12))) }
			offset := int64(0)
			for range 200 {
				state := maps.Clone(committed)
				var recs []*kgo.Record
				var want []string
				aborted := false
				for range 1 + rng.IntN(20) {
					call := maps.Clone(state)
					var cmds, outs []string
					for range 1 + rng.IntN(4) {
						switch k := key(); rng.IntN(5) {
						case 0, 1:
							v := fmt.Sprint(rng.IntN(100))
							cmds = append(cmds, "set "+k+" "+v)
							call[k] = v
						case 2:
							cmds = append(cmds, "del "+k)
							delete(call, k)
						case 3:
							cmds = append(cmds, "get "+k)
							v, ok := call[k]
							outs = append(outs, fmt.Sprintf("%s=%s/%t", k, v, ok))
						case 4:
							lo, hi := key(), key()
							cmds = append(cmds, "scan "+lo+" "+hi)
							var b strings.Builder
							for _, k := range slices.Sorted(maps.Keys(call)) {
								if k >= lo && k < hi {
									fmt.Fprintf(&b, "%s=%s ", k, call[k])
								}
							}
							outs = append(outs, b.String())
						}
					}
					switch rng.IntN(15) {
					case 0:
						cmds = append(cmds, "fail")
						outs = []string{"dlq"}
					case 1:
						cmds = append(cmds, "fatal")
						aborted = true
					default:
						state = call
					}
					recs = append(recs, kvRecord(offset, strings.Join(cmds, ";")))
					offset++
					want = append(want, outs...)
					if aborted {
						break
					}
				}
				out, err := h.Records(context.Background(), recs)
				if aborted {
					if err == nil {
						t.Fatal("a fatal call did not abort the batch")
					}
					offset -= int64(len(recs))
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, r := range out {
					if r.Topic == "out" {
						got = append(got, string(r.Value))
					} else {
						got = append(got, "dlq")
					}
				}
				if !slices.Equal(got, want) {
					t.Fatalf("batch at offset %d read %q\nwant %q", recs[0].Offset, got, want)
				}
				committed = state
				snap, err := h.Dump("kv")
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range committed {
					if snap["0/"+k] != v {
						t.Fatalf("committed %s=%q, want %q", k, snap["0/"+k], v)
					}
				}
				if len(snap) != len(committed) {
					t.Fatalf("committed %d keys, want %d", len(snap), len(committed))
				}
			}
		})
	}
}
