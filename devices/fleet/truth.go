package fleet

import (
	"bufio"
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/iotpipe/iotpipe/devices/profile"
)

// TruthRecord is one line of the ground truth file: an anomalous point
// of a device, once its publish settled. Acked says whether the broker
// acknowledged it (only those can be in the log); Seq and Time find the
// point among the device's telemetry ("seq" and "ts" in its payload).
type TruthRecord struct {
	Device string `json:"device"`
	Seq    uint64 `json:"seq"`
	// Time is when the point was published; TS the same in Unix
	// milliseconds, as in the payload's "ts".
	Time time.Time `json:"time"`
	TS   int64     `json:"ts"`
	profile.Anomaly
	Acked bool `json:"acked"`
}

// truthWriter writes TruthRecords as JSON lines from many goroutines.
type truthWriter struct {
	mu  sync.Mutex
	w   *bufio.Writer
	err error
}

func newTruthWriter(w io.Writer) *truthWriter { return &truthWriter{w: bufio.NewWriter(w)} }

func (t *truthWriter) write(o *Outcome) {
	rec := TruthRecord{Device: o.Device, Seq: o.Point.Seq, Time: o.Sent.UTC(), TS: o.Sent.UnixMilli(),
		Anomaly: *o.Point.Anomaly, Acked: o.Acked}
	b, err := json.Marshal(&rec)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return
	}
	if err != nil {
		t.err = err
		return
	}
	b = append(b, '\n')
	_, t.err = t.w.Write(b)
}

func (t *truthWriter) flush() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return t.err
	}
	return t.w.Flush()
}
