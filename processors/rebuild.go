package processors

import (
	"context"
	"fmt"
	"strings"

	"github.com/cockroachdb/pebble"
	"github.com/iotpipe/iotpipe/internal/eventlog"
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
	err = eventlog.ReadToEnd(ctx, factory.Client, topic, func(rec *kgo.Record) error {
		_, err := h.Record(ctx, rec)
		return err
	})
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("rebuild: %w", err)
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
