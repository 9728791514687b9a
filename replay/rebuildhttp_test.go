package replay

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/iotpipe/iotpipe/processors"
)

// heldRunner processes two partitions; its Hold waits for release and
// then fails (nothing to rebuild: the handler's job bookkeeping is what
// is tested here, RebuildLive on a real runner in cmd/iotpipe).
type heldRunner struct{ release chan struct{} }

func (heldRunner) Partitions() []int32 { return []int32{0, 1} }
func (h heldRunner) Hold(ctx context.Context, p int32, _ func(*processors.Held) error) error {
	<-h.release
	return errors.New("held partition failed")
}

// One rebuild at a time: a second POST while one runs is 409; a bad
// request is 400; GET shows the last job: 404 before any, running, then
// failed with the error.
func TestRebuildHandlerJobs(t *testing.T) {
	r := heldRunner{release: make(chan struct{})}
	opts := func(req RebuildRequest) (RebuildOptions, error) {
		if req.Processor != "all" && req.Processor != "shadows" {
			return RebuildOptions{}, errors.New("--processor: want shadows or all")
		}
		return RebuildOptions{}, nil
	}
	h := RebuildHandler(context.Background(), r, opts, logtest.Quiet())
	do := func(method, body string) (int, RebuildJob) {
		t.Helper()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(method, "/api/rebuild", strings.NewReader(body)))
		var job RebuildJob
		if w.Code < 300 {
			if err := json.Unmarshal(w.Body.Bytes(), &job); err != nil {
				t.Fatal(err)
			}
		}
		return w.Code, job
	}
	if code, _ := do(http.MethodGet, ""); code != 404 {
		t.Fatalf("GET before any rebuild: %d", code)
	}
	if code, _ := do(http.MethodPost, `{"processor": "bogus"}`); code != 400 {
		t.Fatalf("bogus processor: %d", code)
	}
	if code, _ := do(http.MethodPost, `{"processor": `); code != 400 {
		t.Fatalf("malformed body: %d", code)
	}
	code, job := do(http.MethodPost, `{"processor": "shadows", "from_events": true}`)
	if code != 202 || job.ID != 1 || job.State != JobRunning || job.Total != 2 || job.Processor != "shadows" || !job.FromEvents {
		t.Fatalf("POST: %d %+v", code, job)
	}
	if code, _ := do(http.MethodPost, ``); code != 409 {
		t.Fatalf("second POST while one runs: %d", code)
	}
	if code, job := do(http.MethodGet, ""); code != 200 || job.State != JobRunning {
		t.Fatalf("GET while running: %d %+v", code, job)
	}
	close(r.release)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		code, job = do(http.MethodGet, "")
		if job.State != JobRunning || time.Now().After(deadline) {
			break
		}
	}
	if code != 200 || job.State != JobFailed || !strings.Contains(job.Error, "partition 0: held partition failed") || job.Finished == nil {
		t.Fatalf("GET after the failure: %d %+v", code, job)
	}
	if code, job := do(http.MethodPost, ``); code != 202 || job.ID != 2 {
		t.Fatalf("POST after the failed one: %d %+v", code, job)
	}
}
