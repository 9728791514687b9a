package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// LockFile is the file in the data directory that the child serving it
// holds locked (flock) for as long as it runs: a server of an earlier run
// that is still exiting (its parent was killed, its stdin closed) keeps
// its ports until then.
const LockFile = "serve.lock"

// holdLock locks dir's LockFile, waiting for a server of an earlier run
// to exit; the lock lasts until the returned file is closed or the
// process exits.
func holdLock(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	return f, nil
}

// WaitPrevious waits up to timeout for the server of an earlier run on
// dataDir to exit (iotpipe started again at once after a crash: its
// ClickHouse child is still shutting down and holds the ports). It
// returns at once when none runs, and an error saying which server when
// one still does at the timeout.
func WaitPrevious(ctx context.Context, dataDir string, timeout time.Duration, log *slog.Logger) error {
	f, err := os.OpenFile(filepath.Join(dataDir, LockFile), os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil // never served
	}
	if err != nil {
		return fmt.Errorf("embedded clickhouse: %w", err)
	}
	defer f.Close()
	deadline := time.Now().Add(timeout)
	for said := false; ; said = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("embedded clickhouse: lock %s: %w", f.Name(), err)
		}
		if !said {
			log.Info("waiting for the embedded ClickHouse of an earlier run to exit", "dir", dataDir, "timeout", timeout)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the embedded ClickHouse of an earlier run on %s still runs after %s: stop it (its command line has --path=%s) or use another --data-dir", dataDir, timeout, dataDir)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
