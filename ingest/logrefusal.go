package ingest

import (
	"errors"
	"fmt"
	"time"

	"github.com/iotpipe/iotpipe/internal/diskspace"
	"github.com/mochi-mqtt/server/v2/packets"
)

// refusal is why the log did not take a client's publishes: the reason
// in iotpipe_ingest_refused_total, the MQTT 5 PUBACK reason code, and the
// log's own explanation when it has one.
type refusal struct {
	reason string
	code   byte
	err    error
}

// logRefusal asks the log (Options.LogWriteError) why it refuses writes:
// a full disk is "disk_full" with 0x97 (quota exceeded: the client may
// retry later); anything else "log_unavailable" with 0x80.
func (s *Server) logRefusal() refusal {
	if f := s.opts.LogWriteError; f != nil {
		if err := f(); err != nil {
			if errors.Is(err, diskspace.ErrFull) {
				return refusal{"disk_full", packets.ErrQuotaExceeded.Code, err}
			}
			return refusal{"log_unavailable", packets.ErrUnspecifiedError.Code, err}
		}
	}
	return refusal{reason: "log_unavailable", code: packets.ErrUnspecifiedError.Code}
}

// publishesRefused counts n publishes of client refused for r and says so
// in the log, once per 10s per reason with the count since; closing says
// the client's connection is closed for it (MQTT 3.1.1).
func (s *Server) publishesRefused(client string, n int, r refusal, closing bool) {
	s.metrics.refused.WithLabelValues(r.reason).Add(float64(n))
	ok, held := s.refusals.allow(r.reason, time.Now())
	if !ok {
		return
	}
	msg := "publishes refused: the log did not acknowledge them"
	if r.reason == "disk_full" {
		msg = "publishes refused: the event log's disk is full; they are accepted again once there is room"
	}
	args := []any{"reason", r.reason, "client", client, "publishes", n + held, "mqtt5_code", fmt.Sprintf("0x%02x", r.code)}
	if closing {
		args = append(args, "mqtt3", "connection closed")
	}
	if r.err != nil {
		args = append(args, "err", r.err)
	}
	s.opts.Logger.Warn(msg, args...)
}
