package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/iotpipe/iotpipe/processors/rules"
	"github.com/iotpipe/iotpipe/replay"
)

// liveRebuildOptions makes the options of a rebuild on the running node
// (POST /api/rebuild) of its request: the node's log and processors,
// its rules of the moment.
func (n *node) liveRebuildOptions(rp *rules.Processor) func(replay.RebuildRequest) (replay.RebuildOptions, error) {
	return func(req replay.RebuildRequest) (replay.RebuildOptions, error) {
		names, err := parseProcessors(req.Processor)
		if err != nil {
			return replay.RebuildOptions{}, err
		}
		return replay.RebuildOptions{Clients: n.lg, Topics: n.lg.Topics(), Processors: names, FromEvents: req.FromEvents,
			NewProcessors: nodeProcessors(n.cfg, n.lg, n.log, rp), Logger: n.log}, nil
	}
}

// rebuildRunning asks the running node's API for a rebuild and follows
// it until it ends, with progress on stderr when it is a terminal.
func rebuildRunning(ctx context.Context, c *apiClient, req replay.RebuildRequest, stdout, stderr io.Writer) int {
	var job replay.RebuildJob
	if _, err := c.do(ctx, http.MethodPost, "/api/rebuild", req, &job); err != nil {
		fmt.Fprintln(stderr, "iotpipe rebuild:", err)
		return 1
	}
	tty := isTerminal(stderr)
	for job.State == replay.JobRunning {
		if tty {
			fmt.Fprintf(stderr, "\rrebuild %d: %d/%d partitions", job.ID, job.Done, job.Total)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stderr, "\niotpipe rebuild: interrupted; rebuild %d goes on in the node (GET /api/rebuild)\n", job.ID)
			return exitInterrupted
		case <-time.After(300 * time.Millisecond):
		}
		var next replay.RebuildJob
		if _, err := c.do(ctx, http.MethodGet, "/api/rebuild", nil, &next); err != nil {
			fmt.Fprintln(stderr, "iotpipe rebuild:", err)
			return 1
		}
		if next.ID != job.ID {
			fmt.Fprintf(stderr, "iotpipe rebuild: the node now shows rebuild %d, not %d (restarted?)\n", next.ID, job.ID)
			return 1
		}
		job = next
	}
	if tty {
		fmt.Fprintf(stderr, "\rrebuild %d: %d/%d partitions\n", job.ID, job.Done, job.Total)
	}
	if job.Report != nil {
		fmt.Fprint(stdout, rebuildReport(job.Report, job.FromEvents))
	}
	if job.State != replay.JobDone {
		fmt.Fprintln(stderr, "iotpipe rebuild:", errors.New(job.Error))
		return 1
	}
	return 0
}
