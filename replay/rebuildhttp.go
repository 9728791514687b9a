package replay

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/segmentio/encoding/json"
)

// A rebuild on a running node (POST /api/rebuild): the processors'
// partitions are rebuilt one at a time, each held between two batches
// (RebuildLive), while ingest and the other partitions go on. One runs at
// a time; GET /api/rebuild says how the last one is going.

// RebuildJob is a rebuild on the running node, as the API shows it.
type RebuildJob struct {
	ID         int            `json:"id"`
	Processor  string         `json:"processor"`
	FromEvents bool           `json:"from_events"`
	State      string         `json:"state"` // JobRunning, JobDone, JobFailed
	Started    time.Time      `json:"started"`
	Finished   *time.Time     `json:"finished,omitempty"`
	Done       int            `json:"partitions_done"`
	Total      int            `json:"partitions"`
	Report     *RebuildReport `json:"report,omitempty"`
	Error      string         `json:"error,omitempty"`
}

// RebuildJob states.
const (
	JobRunning = "running"
	JobDone    = "done"
	JobFailed  = "failed"
)

// RebuildRequest is the body of POST /api/rebuild.
type RebuildRequest struct {
	// Processor is what iotpipe rebuild --processor takes (default all).
	Processor  string `json:"processor"`
	FromEvents bool   `json:"from_events"`
}

// RebuildHandler serves POST /api/rebuild (starts a rebuild of the
// running node: 202 and the job; 409 while one runs; 400 when options
// refuses the request) and GET /api/rebuild (the last job; 404 when none
// ran). The rebuilds run under ctx (the node's processing) with the
// options options makes of the request.
func RebuildHandler(ctx context.Context, r LiveRunner, options func(RebuildRequest) (RebuildOptions, error), log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	return &liveRebuilds{ctx: ctx, runner: r, options: options, log: log}
}

type liveRebuilds struct {
	ctx     context.Context
	runner  LiveRunner
	options func(RebuildRequest) (RebuildOptions, error)
	log     *slog.Logger

	mu   sync.Mutex
	last *RebuildJob
	n    int
}

func (lr *liveRebuilds) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		lr.mu.Lock()
		defer lr.mu.Unlock()
		if lr.last == nil {
			httpError(w, http.StatusNotFound, "no rebuild has run on this node since it started")
			return
		}
		writeJSON(w, http.StatusOK, lr.last)
		return
	}
	var req RebuildRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err == nil && len(body) > 0 {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, `body: want {"processor": "shadows|rules|lastseen|all", "from_events": false}: `+err.Error())
		return
	}
	if req.Processor == "" {
		req.Processor = "all"
	}
	o, err := lr.options(req)
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	job, err := lr.start(req, o)
	if err != nil {
		httpError(w, http.StatusConflict, err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, job)
}

// start starts a rebuild job and returns a copy of it as it starts.
func (lr *liveRebuilds) start(req RebuildRequest, o RebuildOptions) (RebuildJob, error) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if lr.last != nil && lr.last.State == JobRunning {
		return RebuildJob{}, fmt.Errorf("rebuild %d is running (GET /api/rebuild); one at a time", lr.last.ID)
	}
	lr.n++
	job := &RebuildJob{ID: lr.n, Processor: req.Processor, FromEvents: req.FromEvents, State: JobRunning,
		Started: time.Now().UTC(), Total: len(lr.runner.Partitions())}
	lr.last = job
	o.OnPartition = func(done, total int) {
		lr.mu.Lock()
		job.Done, job.Total = done, total
		lr.mu.Unlock()
	}
	lr.log.Info("rebuild started on the running node", "id", job.ID, "processor", req.Processor, "from_events", req.FromEvents)
	go func() {
		rep, err := RebuildLive(lr.ctx, o, lr.runner)
		lr.mu.Lock()
		defer lr.mu.Unlock()
		now := time.Now().UTC()
		job.Finished, job.Report, job.State = &now, rep, JobDone
		if err != nil {
			job.State, job.Error = JobFailed, err.Error()
			lr.log.Error("rebuild failed", "id", job.ID, "err", err)
			return
		}
		lr.log.Info("rebuild done", "id", job.ID, "took", now.Sub(job.Started).Round(time.Millisecond))
	}()
	return *job, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
