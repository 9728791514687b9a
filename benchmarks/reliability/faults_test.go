package reliability

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/diskspace"
	"github.com/iotpipe/iotpipe/internal/tmpfstest"
)

func TestMoments(t *testing.T) {
	a := Moments(7, 20, time.Second, 5*time.Second)
	if !slices.Equal(a, Moments(7, 20, time.Second, 5*time.Second)) {
		t.Fatal("the same seed gave other moments")
	}
	if slices.Equal(a, Moments(8, 20, time.Second, 5*time.Second)) {
		t.Fatal("another seed gave the same moments")
	}
	for _, d := range a {
		if d < time.Second || d >= 5*time.Second {
			t.Fatalf("moment %s outside [1s, 5s)", d)
		}
	}
}

// The ballast leaves about what was asked free on a size-limited
// filesystem; removed, the space is back.
func TestBallastFillsAndFrees(t *testing.T) {
	dir := tmpfstest.Mount(t, 32)
	const leave = 4 << 20
	b, err := Fill(dir, leave)
	if err != nil {
		t.Fatal(err)
	}
	free, _ := diskspace.Available(dir)
	if free > leave+64<<10 || free+64<<10 < leave {
		t.Errorf("%d bytes free with the ballast, want about %d", free, leave)
	}
	if err := os.WriteFile(filepath.Join(dir, "big"), make([]byte, 8<<20), 0o644); err == nil {
		t.Error("wrote 8 MiB with 4 MiB free")
	}
	os.Remove(filepath.Join(dir, "big"))
	if err := b.Remove(); err != nil {
		t.Fatal(err)
	}
	if free, _ := diskspace.Available(dir); free < 31<<20 {
		t.Errorf("%d bytes free after removing the ballast, want about 32 MiB", free)
	}
	if _, err := Fill(dir, 64<<20); err == nil {
		t.Error("a ballast leaving more than the filesystem holds")
	}
}

func TestKillMatching(t *testing.T) {
	cmd := exec.Command("sleep", "3141.5926")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	n, err := KillMatching("sleep 3141.5926")
	if err != nil || n != 1 {
		t.Fatalf("killed %d, %v; want 1", n, err)
	}
	select {
	case <-done:
		if s := cmd.ProcessState.String(); s != "signal: killed" {
			t.Errorf("the process ended with %s", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the process still runs")
	}
	if n, err := KillMatching("sleep 3141.5926"); n != 0 || err != nil {
		t.Errorf("killed %d, %v with none running", n, err)
	}
}
