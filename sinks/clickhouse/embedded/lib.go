package embedded

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// ChDBVersion is the pinned version of the npm package
// @chdb/lib-linux-x64-gnu: the first that contains the server code.
const ChDBVersion = "26.7.3-stable.1"

// LibEnv names the environment variable that overrides where libchdb.so is.
const LibEnv = "IOTPIPE_CHDB_LIB"

// libRels are where install-chdb.sh puts the library (and its stable
// symlink) below its cache directory: .cache/chdb in a repository, or
// iotpipe/chdb in the user's cache directory (`make deps`).
var libRels = []string{
	filepath.Join("chdb", ChDBVersion, "libchdb.so"),
	filepath.Join("chdb", "libchdb.so"),
}

// LibPath finds libchdb.so: $IOTPIPE_CHDB_LIB when set; otherwise
// .cache/chdb/<version>/libchdb.so (or the .cache/chdb/libchdb.so
// symlink) in the working directory or one of its parents (the
// repository root), or beside the executable or one of its parents;
// otherwise where `make deps` installs it for the user:
// $XDG_CACHE_HOME/iotpipe/chdb (default ~/.cache/iotpipe/chdb). The
// error lists every place it looked and says to run `make deps`.
func LibPath() (string, error) {
	if p := os.Getenv(LibEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("embedded clickhouse: %s=%s: %w; run `make deps` to fetch libchdb.so", LibEnv, p, err)
		}
		return p, nil
	}
	var looked []string // the chdb directories, each once
	find := func(dir string) (string, bool) {
		if d := filepath.Join(dir, "chdb"); !slices.Contains(looked, d) {
			looked = append(looked, d)
		}
		for _, rel := range libRels {
			p := filepath.Join(dir, rel)
			if _, err := os.Stat(p); err == nil {
				return p, true
			}
		}
		return "", false
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			if p, ok := find(filepath.Join(dir, ".cache")); ok {
				return p, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	if cache, err := os.UserCacheDir(); err == nil {
		if p, ok := find(filepath.Join(cache, "iotpipe")); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("embedded clickhouse: libchdb.so %s not found (set %s, or looked in %s for %s/libchdb.so and libchdb.so); run `make deps` (sinks/clickhouse/install-chdb.sh) to fetch it, or pass --clickhouse DSN to use another server (or --clickhouse off)",
		ChDBVersion, LibEnv, strings.Join(looked, ", "), ChDBVersion)
}
