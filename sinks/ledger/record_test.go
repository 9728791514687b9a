package ledger

import (
	"slices"
	"strings"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	tests := []record{
		{next: 0, end: 0},
		{next: 42, end: 42},
		{next: 10, end: 15, pending: []int64{10}},
		{next: 10, end: 1_000_000, pending: []int64{10, 11, 500, 999_999}},
		{next: 1 << 40, end: 1<<40 + 3, pending: []int64{1 << 40, 1<<40 + 2}},
	}
	for _, r := range tests {
		b := r.appendTo(nil)
		got, err := decodeRecord(b)
		if err != nil {
			t.Fatalf("%+v: %v", r, err)
		}
		if got.next != r.next || got.end != r.end || !slices.Equal(got.pending, r.pending) {
			t.Errorf("round trip of %+v = %+v", r, got)
		}
	}
	// Small: a partition with two records in flight among a million done.
	if b := (record{next: 10, end: 1_000_000, pending: []int64{10, 500}}).appendTo(nil); len(b) > 12 {
		t.Errorf("encoding takes %d bytes, want at most 12", len(b))
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"other version", []byte{2, 0, 0, 0}, "version 2"},
		{"truncated", []byte{1, 5}, "truncated"},
		{"count larger than the bytes left", []byte{1, 0, 5, 200, 1}, "pending offsets in"},
		{"pending at the end", []byte{1, 0, 2, 1, 2}, "not below the end"},
		{"pending past the end", []byte{1, 0, 2, 2, 0, 5}, "not below the end"},
		{"trailing bytes", []byte{1, 0, 0, 0, 7}, "trailing"},
		{"offset overflow", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0}, "overflows"},
		{"varint too long", []byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0}, "bad or truncated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeRecord(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("decodeRecord(%v) error %v, want one containing %q", tt.in, err, tt.want)
			}
		})
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte{})
	f.Add(record{next: 3, end: 9, pending: []int64{3, 7}}.appendTo(nil))
	f.Add(record{next: 1 << 50, end: 1<<50 + 1, pending: []int64{1 << 50}}.appendTo(nil))
	f.Add([]byte{1, 0, 5, 200, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		if r.next < 0 || r.end < r.next {
			t.Fatalf("decoded %+v: next and end out of order", r)
		}
		for i, p := range r.pending {
			if p < r.next || p >= r.end || i > 0 && p <= r.pending[i-1] {
				t.Fatalf("decoded %+v: pending offsets not increasing in [next, end)", r)
			}
		}
		again, err := decodeRecord(r.appendTo(nil))
		if err != nil || again.next != r.next || again.end != r.end || !slices.Equal(again.pending, r.pending) {
			t.Fatalf("re-encoding %+v decodes to %+v, %v", r, again, err)
		}
	})
}
