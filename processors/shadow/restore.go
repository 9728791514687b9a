package shadow

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/shadow/document"
	"github.com/twmb/franz-go/pkg/kgo"
)

// State keys of a restore (no shadow key starts with NUL): the events
// offset the whole restore reflects, and per restored shadow the events
// offset its restored document reflects.
var (
	restoredThroughKey = []byte("\x00restored")
	restoredPrefix     = "\x00restored\x00"
)

// Changelog implements processors.Restorer: the shadows topic.
func (p *Processor) Changelog() string { return p.shadows }

// Restore implements processors.Restorer: a partition that starts with
// no state gets back, from the compacted shadows changelog, the latest
// document of every shadow whose requests are in that partition, so
// shadows outlive the events topic's retention. The changelog record's
// iot.src header ("<partition>/<offset>/...") tells the events partition
// and offset the document reflects; the processor then skips, for each
// restored shadow, the events at or before that offset as the partition
// is applied again from the start of what the log still holds.
func (p *Processor) Restore(ctx context.Context, tx *processors.Tx, read processors.ReadTopic) (int, error) {
	type doc struct {
		value  []byte
		offset int64
	}
	latest := map[string]doc{}
	err := read(ctx, p.shadows, func(r *kgo.Record) error {
		part, off, ok := processors.Source(r)
		if !ok || part != tx.Partition() {
			return nil
		}
		if d, seen := latest[string(r.Key)]; seen && d.offset > off {
			return nil
		}
		latest[string(r.Key)] = doc{r.Value, off}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", p.shadows, err)
	}
	through := int64(-1)
	var b [8]byte
	for k, d := range latest {
		if _, err := document.DecodeStored(d.value); err != nil {
			return 0, fmt.Errorf("changelog document of %s: %w", k, err)
		}
		if err := tx.Set([]byte(k), d.value); err != nil {
			return 0, err
		}
		tx.Memo().Delete([]byte(k)) // the memo must match the state
		binary.BigEndian.PutUint64(b[:], uint64(d.offset))
		if err := tx.Set([]byte(restoredPrefix+k), b[:]); err != nil {
			return 0, err
		}
		through = max(through, d.offset)
	}
	if through < 0 {
		return 0, nil
	}
	binary.BigEndian.PutUint64(b[:], uint64(through))
	tx.Memo().Put(restoredThroughKey, through)
	return len(latest), tx.Set(restoredThroughKey, b[:])
}

// restored reports whether the event at offset on the shadow key is
// already reflected in a document Restore put back. Outside the offsets
// a restore covers (always, when there was none) it costs a memo lookup.
func (p *Processor) restored(tx *processors.Tx, key []byte, offset int64) (bool, error) {
	through, err := p.restoredThrough(tx)
	if err != nil || through < 0 {
		return false, err
	}
	if offset > through {
		return false, p.forgetRestore(tx)
	}
	b, ok, err := tx.Get(append([]byte(restoredPrefix), key...))
	if err != nil || !ok || len(b) != 8 {
		return false, err
	}
	return offset <= int64(binary.BigEndian.Uint64(b)), nil
}

// forgetRestore deletes the restore's bookkeeping once the partition's
// events have passed every offset it covers: from then on the state is
// what applying the events gives, key for key.
func (p *Processor) forgetRestore(tx *processors.Tx) error {
	var keys [][]byte
	lo := []byte(restoredPrefix)
	hi := append([]byte(restoredPrefix[:len(restoredPrefix)-1]), 1)
	err := tx.Scan(lo, hi, func(k, _ []byte) bool {
		keys = append(keys, append([]byte(nil), k...))
		return true
	})
	if err != nil {
		return fmt.Errorf("shadow: scan restore marks: %w", err)
	}
	for _, k := range append(keys, restoredThroughKey) {
		if err := tx.Delete(k); err != nil {
			return fmt.Errorf("shadow: forget restore: %w", err)
		}
	}
	tx.Memo().Put(restoredThroughKey, int64(-1))
	return nil
}

// restoredThrough returns the events offset the partition's restore
// reflects, -1 when it was not restored; memoized.
func (p *Processor) restoredThrough(tx *processors.Tx) (int64, error) {
	if v, ok := tx.Memo().Get(restoredThroughKey); ok {
		return v.(int64), nil
	}
	through := int64(-1)
	b, ok, err := tx.Get(restoredThroughKey)
	if err != nil {
		return 0, fmt.Errorf("shadow: read restore offset: %w", err)
	}
	if ok && len(b) == 8 {
		through = int64(binary.BigEndian.Uint64(b))
	}
	tx.Memo().Put(restoredThroughKey, through)
	return through, nil
}
