package clickhouse

import (
	"hash/maphash"
	"testing"
)

func TestIDWindow(t *testing.T) {
	w := newIDWindow(maphash.MakeSeed(), 3)
	steps := []struct {
		id  string
		new bool
	}{
		{"0/1/rules/0", true},
		{"0/1/rules/1", true},
		{"0/1/rules/0", false}, // produced again
		{"0/2/rules/0", true},
		{"0/3/rules/0", true},  // the window is full: 0/1/rules/0 leaves it
		{"0/1/rules/0", true},  // too far behind to be caught
		{"0/3/rules/0", false}, // still held
		{"0/1/rules/1", true},  // left when 0/1/rules/0 came back
	}
	for i, st := range steps {
		if got := w.add(st.id); got != st.new {
			t.Errorf("step %d: add(%q) = %v, want %v", i, st.id, got, st.new)
		}
	}
	if len(w.set) != 3 || len(w.ring) != 3 {
		t.Errorf("window holds %d ids in a ring of %d, want 3 and 3", len(w.set), len(w.ring))
	}
}
