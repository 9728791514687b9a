package processors

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/diskspace"
	"github.com/iotpipe/iotpipe/internal/tmpfstest"
)

// bulky counts like counter and keeps 128 KiB of state per event, so a
// few dozen events fill Pebble's memtable and move its WAL to a new file.
type bulky struct{ counter }

func (b bulky) Process(ctx context.Context, tx *Tx, ev *Event) error {
	if err := b.counter.Process(ctx, tx, ev); err != nil {
		return err
	}
	return tx.Set(fmt.Appendf(nil, "%s/%d", ev.Thing, ev.Offset), bytes.Repeat([]byte{byte(ev.Offset)}, 128<<10))
}

// A runner whose state disk fills up stops writing state before the
// disk is full (Pebble ends the process when a WAL write fails: the
// reliability suite's disk-full fault found `iotpipe run` gone) and
// carries on by itself once there is room, every event applied once.
func TestFullStateDiskPausesAndResumes(t *testing.T) {
	dir := tmpfstest.Mount(t, 64) // unmounted last: registered first
	g := newRig(t)
	n := g.start(dir, bulky{counter{"c1", g.topics.Outbound}})
	defer n.close(t)
	g.send(20)
	g.waitOutputs(20)

	free, err := diskspace.Available(dir)
	if err != nil {
		t.Fatal(err)
	}
	usedMiB := int((64<<20 - free + 1<<20 - 1) >> 20)
	tmpfstest.Resize(t, dir, usedMiB+1) // about 1 MiB left
	g.send(200)                         // 25 MiB of state
	time.Sleep(3 * time.Second)
	if got := len(g.outputs()); got != 20 {
		t.Errorf("%d outputs committed with a full state disk, want the 20 from before", got)
	}
	tmpfstest.Resize(t, dir, 256)
	g.waitOutputs(220)
}
