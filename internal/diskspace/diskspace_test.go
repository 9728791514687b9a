package diskspace

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/tmpfstest"
)

func TestWatch(t *testing.T) {
	dir := tmpfstest.Mount(t, 8)
	w := &Watch{Dir: dir, Min: 4 << 20, Every: time.Nanosecond}
	if err := w.Check(); err != nil {
		t.Fatalf("empty 8 MiB filesystem: %v", err)
	}
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 6<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	err := w.Check()
	if !errors.Is(err, ErrFull) {
		t.Fatalf("2 MiB left of 8, minimum 4: %v", err)
	}
	t.Log(err)
	os.Remove(filler)
	if err := w.Check(); err != nil {
		t.Fatalf("space back: %v", err)
	}
	cached := &Watch{Dir: dir, Min: 1 << 40, Every: time.Hour}
	first := cached.Check()
	cached.Min = 0
	if cached.Check() != first {
		t.Fatal("a reading was not reused within Every")
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 bytes", 1023: "1023 bytes", 1536: "1.5 KiB", 3 << 20: "3.0 MiB", 5 << 30: "5.0 GiB"} {
		if got := bytes(n); got != want {
			t.Errorf("bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
