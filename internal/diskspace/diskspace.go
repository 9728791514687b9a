// Package diskspace says whether a directory's filesystem is (nearly)
// full, cheaply enough to ask on every failed or upcoming write: a Watch
// reads the filesystem at most once per interval.
package diskspace

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// ErrFull is what Watch.Check wraps when the filesystem has less free
// space than its minimum.
var ErrFull = errors.New("disk full")

// Available returns the bytes unprivileged writers can still use on the
// filesystem holding dir.
func Available(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Watch watches the free space of Dir's filesystem.
type Watch struct {
	// Dir is a directory on the filesystem watched.
	Dir string
	// Min is the free space below which Check reports ErrFull.
	Min uint64
	// Every is how long a reading is reused (default 250ms).
	Every time.Duration

	mu   sync.Mutex
	at   time.Time
	last error
}

// Check returns nil while Dir's filesystem has at least Min bytes free,
// else an error wrapping ErrFull that names the directory and what is
// left. A filesystem that cannot be read counts as not full.
func (w *Watch) Check() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	every := w.Every
	if every <= 0 {
		every = 250 * time.Millisecond
	}
	if now := time.Now(); now.Sub(w.at) >= every {
		w.at = now
		w.last = nil
		if avail, err := Available(w.Dir); err == nil && avail < w.Min {
			w.last = fmt.Errorf("%w: %s has %s free, below the %s needed", ErrFull, w.Dir, bytes(avail), bytes(w.Min))
		}
	}
	return w.last
}

func bytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
