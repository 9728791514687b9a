package reliability

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/iotpipe/iotpipe/internal/diskspace"
)

// Moments returns n waits drawn uniformly from [min, max) with a
// generator seeded by seed: the same seed gives the same moments, so a
// run that found something can be repeated.
func Moments(seed uint64, n int, min, max time.Duration) []time.Duration {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = min + time.Duration(r.Int64N(int64(max-min)))
	}
	return out
}

// KillMatching sends SIGKILL to every process whose command line
// contains pattern (as pgrep -f matches it) and returns how many it
// killed.
func KillMatching(pattern string) (int, error) {
	out, err := exec.Command("pgrep", "-f", "--", pattern).Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return 0, nil // none
	}
	if err != nil {
		return 0, fmt.Errorf("pgrep -f %q: %w", pattern, err)
	}
	n := 0
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err == nil && pid != os.Getpid() && syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n, nil
}

// Ballast is a file that takes a filesystem's free space, so what
// writes there runs out of room; Remove frees it.
type Ballast struct {
	path string
}

// Fill creates a ballast file in dir that leaves about leave bytes free
// on dir's filesystem.
func Fill(dir string, leave uint64) (*Ballast, error) {
	free, err := diskspace.Available(dir)
	if err != nil {
		return nil, err
	}
	if free <= leave {
		return nil, fmt.Errorf("ballast in %s: only %d bytes free, want to leave %d", dir, free, leave)
	}
	f, err := os.CreateTemp(dir, "ballast-*")
	if err != nil {
		return nil, fmt.Errorf("ballast in %s: %w", dir, err)
	}
	defer f.Close()
	b := &Ballast{path: f.Name()}
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, int64(free-leave)); err != nil {
		os.Remove(b.path)
		return nil, fmt.Errorf("ballast of %d bytes in %s: %w", free-leave, dir, err)
	}
	return b, nil
}

// Remove deletes the ballast, freeing its space.
func (b *Ballast) Remove() error {
	if err := os.Remove(b.path); err != nil {
		return fmt.Errorf("remove ballast: %w", err)
	}
	return nil
}
