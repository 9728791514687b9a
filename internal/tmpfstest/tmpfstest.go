// Package tmpfstest mounts small size-limited filesystems for tests that
// fill a disk (it needs root, as the tests that use it do: they are never
// skipped).
package tmpfstest

import (
	"fmt"
	"os/exec"
	"testing"
)

// Mount mounts a tmpfs of sizeMiB under a new temporary directory and
// returns the directory; it is unmounted when the test ends (register
// cleanups that write to it after calling Mount, so they run first).
func Mount(t testing.TB, sizeMiB int) string {
	t.Helper()
	dir := t.TempDir()
	run(t, "mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", sizeMiB), "tmpfs", dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// Resize changes the size of the tmpfs mounted at dir.
func Resize(t testing.TB, dir string, sizeMiB int) {
	t.Helper()
	run(t, "mount", "-o", fmt.Sprintf("remount,size=%dm", sizeMiB), dir)
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s (these tests need root to mount a size-limited filesystem)", name, args, err, out)
	}
}
