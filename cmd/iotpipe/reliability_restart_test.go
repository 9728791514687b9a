package main

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// iotpipe started again at once after a kill -9, while the embedded
// ClickHouse child of the killed process is still exiting (held here
// with SIGSTOP until the new start has begun), waits for it instead of
// failing with "ClickHouse port ... is in use" (the reliability suite's
// kill fault found the restart failing that way under load).
func TestRestartWaitsForThePreviousClickHouse(t *testing.T) {
	in, ch := clickhouseInstance(t)
	in.start(ch...)
	out, err := exec.Command("pgrep", "-f", "--", "--path="+filepath.Join(in.dataDir, "clickhouse")).Output()
	if err != nil {
		t.Fatalf("find the ClickHouse child: %v", err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && syscall.Kill(pid, syscall.SIGSTOP) == nil {
			pids = append(pids, pid)
		}
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	in.kill()
	go func() { // the old child goes on exiting a moment after the new start began
		time.Sleep(3 * time.Second)
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	began := time.Now()
	in.start(ch...)
	if !strings.Contains(in.logText(), "waiting for the embedded ClickHouse of an earlier run to exit") {
		t.Error("the start did not say what it waited for")
	}
	in.waitSQL(t, ch, "SELECT count() FROM telemetry", "0")
	t.Logf("ready %s after the start began, the previous ClickHouse child held for 3 s", time.Since(began).Round(100*time.Millisecond))
}
