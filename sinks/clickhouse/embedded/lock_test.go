package embedded

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/internal/logtest"
)

// WaitPrevious returns at once for a data directory never served or no
// longer served, waits while a server holds its lock and says which
// directory when the wait ends without the server gone.
func TestWaitPrevious(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if err := WaitPrevious(ctx, dir, time.Second, logtest.Quiet()); err != nil {
		t.Fatalf("never served: %v", err)
	}
	lock, err := holdLock(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = WaitPrevious(ctx, dir, 200*time.Millisecond, logtest.Quiet())
	if err == nil || !strings.Contains(err.Error(), "still runs after 200ms") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("served: %v", err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		lock.Close() // the server exits
	}()
	start := time.Now()
	if err := WaitPrevious(ctx, dir, 30*time.Second, logtest.Quiet()); err != nil {
		t.Fatalf("server exiting: %v", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("returned after %s, before the server exited", d)
	}
	if err := WaitPrevious(ctx, dir, time.Second, logtest.Quiet()); err != nil {
		t.Fatalf("no longer served: %v", err)
	}
}
