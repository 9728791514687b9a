package eventlog

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/diskspace"
	"github.com/iotpipe/iotpipe/internal/tmpfstest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// On a full disk the embedded log refuses produces and says why; with
// room again it accepts them by itself.
func TestWriteErrorOnFullDisk(t *testing.T) {
	dir := tmpfstest.Mount(t, 24)
	ctx := context.Background()
	l, err := Open(ctx, Options{DataDir: dir, Port: -1, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	if err := l.WriteError(); err != nil {
		t.Fatalf("empty disk: %v", err)
	}
	cl, err := l.Client(kgo.DefaultProduceTopic(l.Topics().Events), kgo.RecordDeliveryTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	produce := func() error {
		v := make([]byte, 256<<10)
		rand.Read(v) // incompressible
		return cl.ProduceSync(ctx, &kgo.Record{Value: v}).FirstErr()
	}
	var perr error
	for i := 0; i < 200 && perr == nil; i++ {
		perr = produce()
	}
	if perr == nil {
		t.Fatal("50 MiB went into a 24 MiB filesystem")
	}
	werr := l.WriteError()
	if !errors.Is(werr, diskspace.ErrFull) {
		t.Fatalf("produce failed (%v) but WriteError = %v", perr, werr)
	}
	t.Logf("produce: %v; WriteError: %v", perr, werr)

	tmpfstest.Resize(t, dir, 64)
	deadline := time.Now().Add(30 * time.Second)
	for produce() != nil {
		if time.Now().After(deadline) {
			t.Fatal("no produce accepted after the disk grew")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // past the Watch's reuse
	if err := l.WriteError(); err != nil {
		t.Fatalf("room again: %v", err)
	}
}
