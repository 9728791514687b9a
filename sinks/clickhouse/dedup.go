package clickhouse

import "hash/maphash"

// idWindow remembers the source ids of the latest rows of one derived
// table from one source partition, at most max of them: a record whose
// id is here was stored already (a processor produced it again) and is
// dropped. Ids are kept as 64-bit hashes with a per-sink seed.
//
// A processor produces a record again from the events after its last
// commit, so a copy follows its original by at most a batch's outputs,
// and one source partition holds both (they share the key). A copy more
// than max rows of that partition behind its original is not caught.
type idWindow struct {
	seed maphash.Seed
	max  int
	ring []uint64 // in the order added; next is the oldest once full
	next int
	set  map[uint64]struct{}
}

func newIDWindow(seed maphash.Seed, max int) *idWindow {
	return &idWindow{seed: seed, max: max, set: make(map[uint64]struct{}, min(max, 1024))}
}

// add records id and reports whether it was new.
func (w *idWindow) add(id string) bool {
	h := maphash.String(w.seed, id)
	if _, ok := w.set[h]; ok {
		return false
	}
	if len(w.ring) < w.max {
		w.ring = append(w.ring, h)
	} else {
		delete(w.set, w.ring[w.next])
		w.ring[w.next] = h
		w.next = (w.next + 1) % w.max
	}
	w.set[h] = struct{}{}
	return true
}
