// Command chdbserve hosts the embedded ClickHouse server (chDB) in its own
// process: the same role as the hidden `iotpipe clickhouse serve`, as a
// small binary the tests build and supervise.
package main

import (
	"os"

	"github.com/iotpipe/iotpipe/sinks/clickhouse/embedded"
)

func main() {
	os.Exit(embedded.ServeMain(os.Args[1:]))
}
