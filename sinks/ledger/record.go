package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// recordVersion is the first byte of every ledger record value.
const recordVersion = 1

// record is the value of one ledger record: every record of the actions
// partition below next is done, and so is every record in [next, end)
// but those at the pending offsets (read and not yet done when the record
// was written). Nothing at or above end is done.
type record struct {
	next, end int64
	pending   []int64 // strictly increasing, each in [next, end)
}

// appendTo appends the encoding of r to b: the version byte, then
// uvarints: next, end-next, the number of pending offsets, and each
// pending offset as its distance from the previous one (from next for
// the first, minus one after that, since they strictly increase).
func (r record) appendTo(b []byte) []byte {
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, uint64(r.next))
	b = binary.AppendUvarint(b, uint64(r.end-r.next))
	b = binary.AppendUvarint(b, uint64(len(r.pending)))
	prev := r.next
	for i, p := range r.pending {
		gap := p - prev
		if i > 0 {
			gap--
		}
		b = binary.AppendUvarint(b, uint64(gap))
		prev = p
	}
	return b
}

// decodeRecord decodes a ledger record value written by appendTo.
func decodeRecord(b []byte) (record, error) {
	if len(b) == 0 {
		return record{}, errors.New("empty ledger record")
	}
	if b[0] != recordVersion {
		return record{}, fmt.Errorf("ledger record version %d, want %d", b[0], recordVersion)
	}
	d := decoder{b: b[1:]}
	next := d.offset("next offset", 0)
	end := d.offset("end offset", next)
	n := d.uvarint("pending count")
	if d.err != nil {
		return record{}, d.err
	}
	// Each pending offset takes at least one byte: a count larger than
	// what is left is corrupt (and must not size an allocation).
	if n > uint64(len(d.b)) {
		return record{}, fmt.Errorf("ledger record: %d pending offsets in %d bytes", n, len(d.b))
	}
	r := record{next: next, end: end}
	if n > 0 {
		r.pending = make([]int64, 0, n)
	}
	prev := next
	for i := range n {
		base := prev
		if i > 0 {
			base++ // strictly increasing
		}
		p := d.offset("pending offset", base)
		if d.err != nil {
			return record{}, d.err
		}
		if p >= r.end {
			return record{}, fmt.Errorf("ledger record: pending offset %d not below the end offset %d", p, r.end)
		}
		r.pending = append(r.pending, p)
		prev = p
	}
	if len(d.b) > 0 {
		return record{}, fmt.Errorf("ledger record: %d trailing bytes", len(d.b))
	}
	return r, nil
}

// decoder reads uvarints, keeping the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = fmt.Errorf("ledger record: %s: bad or truncated varint", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// offset reads a uvarint added to base, checking that the sum is an
// int64.
func (d *decoder) offset(what string, base int64) int64 {
	v := d.uvarint(what)
	if d.err != nil {
		return 0
	}
	if v > uint64(math.MaxInt64-base) {
		d.err = fmt.Errorf("ledger record: %s overflows", what)
		return 0
	}
	return base + int64(v)
}
