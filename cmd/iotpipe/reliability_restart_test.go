package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/sinks/clickhouse/embedded"
)

// iotpipe started again at once after a kill -9, while the embedded
// ClickHouse child of the killed process is still exiting, waits for it
// instead of failing with "ClickHouse port ... is in use" (the
// reliability suite's kill fault found the restart failing that way
// under load). The child now dies with iotpipe (the parent-death
// signal), but not at the same instant, and not where there is no such
// signal: the test holds the child's serve.lock for 3 s after the kill,
// as a child still exiting does.
func TestRestartWaitsForThePreviousClickHouse(t *testing.T) {
	in, ch := clickhouseInstance(t)
	in.start(ch...)
	in.kill()
	f, err := os.OpenFile(filepath.Join(in.dataDir, "clickhouse", embedded.LockFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("the ClickHouse child's lock file: %v", err)
	}
	defer f.Close()
	for deadline := time.Now().Add(30 * time.Second); syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the killed run's ClickHouse child still holds its lock after 30 s")
		}
	}
	go func() { // the "old child" exits a moment after the new start began
		time.Sleep(3 * time.Second)
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	}()
	began := time.Now()
	in.start(ch...)
	if !strings.Contains(in.logText(), "waiting for the embedded ClickHouse of an earlier run to exit") {
		t.Error("the start did not say what it waited for")
	}
	if waited := time.Since(began); waited < 3*time.Second {
		t.Errorf("ready %s after the start began, while the lock was held for 3 s", waited.Round(100*time.Millisecond))
	}
	in.waitSQL(t, ch, "SELECT count() FROM telemetry", "0")
	t.Logf("ready %s after the start began, the previous ClickHouse child's lock held for 3 s", time.Since(began).Round(100*time.Millisecond))
}
