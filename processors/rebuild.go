package processors

import (
	"context"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Rebuild replays topic from its start up to its current end offsets
// through procs, with side effects off (emitted records are dropped), into
// a fresh in-memory state, and returns it as a Harness to read or compare
// (Harness.Snapshot). It is the check that every processor's state is a
// function of the log: a rebuild equals the live state.
func Rebuild(ctx context.Context, factory ClientFactory, topic string, procs []Processor) (*Harness, error) {
	h, err := NewHarness(procs...)
	if err != nil {
		return nil, err
	}
	h.DryRun = true
	cl, err := factory.Client()
	if err != nil {
		h.Close()
		return nil, err
	}
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	cl.Close()
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("rebuild: end offsets of %s: %w", topic, err)
	}
	remaining := map[int32]int64{}
	parts := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
			parts[o.Partition] = kgo.NewOffset().AtStart()
		}
	})
	if len(remaining) == 0 {
		return h, nil
	}
	cl, err = factory.Client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}))
	if err != nil {
		h.Close()
		return nil, err
	}
	defer cl.Close()
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			h.Close()
			return nil, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			h.Close()
			return nil, fmt.Errorf("rebuild: fetch %s: %w", topic, ferr)
		}
		for _, rec := range fs.Records() {
			end, ok := remaining[rec.Partition]
			if !ok || rec.Offset >= end {
				continue
			}
			if _, err := h.Record(ctx, rec); err != nil {
				h.Close()
				return nil, err
			}
			if rec.Offset == end-1 {
				delete(remaining, rec.Partition)
			}
		}
	}
	return h, nil
}

// DumpState reads a stopped runner's state directory and returns every
// key of processor in every partition as "<partition>/<key>" -> value.
func DumpState(dir, processor string) (map[string]string, error) {
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", dir, err)
	}
	defer db.Close()
	return dumpProcessor(db, processor)
}

// Dump returns every key of processor in every partition of the
// harness's state as "<partition>/<key>" -> value, like DumpState.
func (h *Harness) Dump(processor string) (map[string]string, error) {
	return dumpProcessor(h.db, processor)
}

func dumpProcessor(db *pebble.DB, processor string) (map[string]string, error) {
	out := map[string]string{}
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{'p'}, UpperBound: []byte{'q'}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	want := processor + "\x00"
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) < 5 {
			continue
		}
		p := int32(uint32(k[1])<<24 | uint32(k[2])<<16 | uint32(k[3])<<8 | uint32(k[4]))
		rest := string(k[5:])
		if strings.HasPrefix(rest, want) {
			out[fmt.Sprintf("%d/%s", p, rest[len(want):])] = string(it.Value())
		}
	}
	return out, nil
}
