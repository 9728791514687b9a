package replay

import (
	"testing"

	"github.com/iotpipe/iotpipe/sinks/clickhouse/chtest"
)

// chsrv is the ClickHouse server the export tests read Parquet files
// with (the embedded one, started on first use).
var chsrv chtest.Lazy

func TestMain(m *testing.M) { chtest.Main(m, &chsrv) }
