package embedded

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ChDBVersion is the pinned version of the npm package
// @chdb/lib-linux-x64-gnu: the first that contains the server code.
const ChDBVersion = "26.7.3-stable.1"

// LibEnv names the environment variable that overrides where libchdb.so is.
const LibEnv = "IOTPIPE_CHDB_LIB"

// libRels are where install-chdb.sh puts the library (and its stable
// symlink), below the repository root.
var libRels = []string{
	filepath.Join(".cache", "chdb", ChDBVersion, "libchdb.so"),
	filepath.Join(".cache", "chdb", "libchdb.so"),
}

// LibPath finds libchdb.so: $IOTPIPE_CHDB_LIB when set, otherwise
// .cache/chdb/<version>/libchdb.so (or the .cache/chdb/libchdb.so
// symlink) in the working directory or one of its parents (the
// repository root), or beside the executable or one of its parents. The error says to run `make deps` when it is nowhere.
func LibPath() (string, error) {
	if p := os.Getenv(LibEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("embedded clickhouse: %s=%s: %w; run `make deps` to fetch libchdb.so", LibEnv, p, err)
		}
		return p, nil
	}
	var looked []string
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			for _, rel := range libRels {
				p := filepath.Join(dir, rel)
				looked = append(looked, p)
				if _, err := os.Stat(p); err == nil {
					return p, nil
				}
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("embedded clickhouse: libchdb.so %s not found (set %s, or looked in %s); run `make deps` (sinks/clickhouse/install-chdb.sh) to fetch it",
		ChDBVersion, LibEnv, strings.Join(looked, ", "))
}
