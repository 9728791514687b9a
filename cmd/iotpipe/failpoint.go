package main

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// FailpointEnv names the test-only failpoint: "before-commit:N" or
// "after-commit:N" makes the process exit at once (as kill -9 would, no
// cleanup) at the Nth batch that emitted derived records (actions,
// anomalies, aggregates), once they were all acknowledged: before its
// transaction commits, or after it and before the local state commits.
// The crash tests use it; nobody else should.
const FailpointEnv = "IOTPIPE_FAILPOINT"

// setFailpoint arms the failpoint of FailpointEnv on opts, if set.
func setFailpoint(opts *processors.RunnerOptions, topics schemas.Topics, log *slog.Logger) error {
	v := os.Getenv(FailpointEnv)
	if v == "" {
		return nil
	}
	where, nth, ok := strings.Cut(v, ":")
	n, err := strconv.Atoi(nth)
	if !ok || err != nil || n < 1 || (where != "before-commit" && where != "after-commit") {
		return fmt.Errorf("%s=%q: want before-commit:N or after-commit:N", FailpointEnv, v)
	}
	var seen atomic.Int64
	hook := func(_ int32, emitted []*kgo.Record) {
		for _, r := range emitted {
			if r.Topic == topics.Actions || r.Topic == topics.Anomalies || r.Topic == topics.Aggregates {
				if seen.Add(1) == int64(n) {
					log.Warn("failpoint: exiting like kill -9", "where", where, "batch", n)
					os.Exit(137)
				}
				return
			}
		}
	}
	log.Warn("test failpoint armed: this process will exit at it", "failpoint", v)
	if where == "before-commit" {
		opts.BeforeCommit = hook
	} else {
		opts.AfterCommit = hook
	}
	return nil
}
