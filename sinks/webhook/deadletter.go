package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
)

// Dead-letter record headers of the webhook stage, beside the action
// record's own headers and schemas' dlq.stage, dlq.reason and
// dlq.source.
const (
	dlqStage     = schemas.HeaderDLQStage
	dlqReason    = schemas.HeaderDLQReason
	dlqSource    = schemas.HeaderDLQSource
	dlqKind      = "dlq.kind"
	dlqStatus    = "dlq.status"
	dlqAttempts  = "dlq.attempts"
	dlqError     = "dlq.error"
	dlqURL       = "dlq.url"
	dlqResponse  = "dlq.response"
	dlqFirstTry  = "dlq.first_attempt"
	dlqLastTry   = "dlq.last_attempt"
	stageWebhook = "webhook"
)

// DeadLetter is a webhook firing written to the DLQ topic, as read back by
// ParseDeadLetter.
type DeadLetter struct {
	// Key is the record key: the action record's key (its idempotency key).
	Key string
	// Action is the action record's value, unchanged (schemas.Action JSON).
	Action []byte
	// Reason says in one line why the firing was not delivered.
	Reason string
	// Kind is rejected (a final HTTP status), exhausted (out of attempts or
	// time) or invalid (the action cannot be sent, e.g. no url).
	Kind string
	// Status is the last HTTP status, 0 if no response arrived.
	Status int
	// Attempts is the number of HTTP attempts made.
	Attempts int
	// Error is the last error.
	Error string
	// URL is the target URL, with any password redacted.
	URL string
	// Response is the start of the last response body.
	Response string
	// Source is the action record's "topic/partition/offset".
	Source string
	// FirstAttempt and LastAttempt bound the attempts (zero if none).
	FirstAttempt, LastAttempt time.Time
}

// deadLetterRecord builds the DLQ record of an undelivered firing. req is
// nil for an invalid action.
func deadLetterRecord(topic string, rec *kgo.Record, req *request, out outcome) *kgo.Record {
	reason := describe(out)
	h := append([]kgo.RecordHeader(nil), rec.Headers...)
	h = schemas.AppendDLQHeaders(h, stageWebhook, reason, schemas.RecordSource(rec))
	add := func(k, v string) { h = append(h, kgo.RecordHeader{Key: k, Value: []byte(v)}) }
	add(dlqKind, out.kind)
	add(dlqStatus, strconv.Itoa(out.status))
	add(dlqAttempts, strconv.Itoa(out.attempts))
	if out.err != nil {
		add(dlqError, out.err.Error())
	}
	if req != nil {
		if u, err := url.Parse(req.url); err == nil {
			add(dlqURL, u.Redacted())
		}
	}
	if out.body != "" {
		add(dlqResponse, out.body)
	}
	if out.attempts > 0 {
		add(dlqFirstTry, out.first.UTC().Format(time.RFC3339Nano))
		add(dlqLastTry, out.last.UTC().Format(time.RFC3339Nano))
	}
	return &kgo.Record{Topic: topic, Key: rec.Key, Value: rec.Value, Headers: h}
}

// describe is the one-line reason of an outcome.
func describe(out outcome) string {
	switch out.kind {
	case kindRejected:
		return fmt.Sprintf("target answered %d %s (not retried) after %d attempt(s)", out.status, statusText(out.status), out.attempts)
	case kindExhausted:
		return fmt.Sprintf("gave up after %d attempt(s) over %s: last error: %v", out.attempts, out.last.Sub(out.first).Round(time.Millisecond), out.err)
	case kindInvalid:
		return fmt.Sprintf("invalid webhook action: %v", out.err)
	}
	return fmt.Sprintf("%s: %v", out.kind, out.err)
}

func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return t
	}
	return "unknown status"
}

// ParseDeadLetter reads a DLQ record written by the webhook executor. It
// fails for records of other stages.
func ParseDeadLetter(rec *kgo.Record) (DeadLetter, error) {
	d := DeadLetter{Key: string(rec.Key), Action: rec.Value}
	stage := ""
	var err error
	for _, h := range rec.Headers {
		v := string(h.Value)
		switch h.Key {
		case dlqStage:
			stage = v
		case dlqReason:
			d.Reason = v
		case dlqSource:
			d.Source = v
		case dlqKind:
			d.Kind = v
		case dlqStatus:
			d.Status, err = strconv.Atoi(v)
		case dlqAttempts:
			d.Attempts, err = strconv.Atoi(v)
		case dlqError:
			d.Error = v
		case dlqURL:
			d.URL = v
		case dlqResponse:
			d.Response = v
		case dlqFirstTry:
			d.FirstAttempt, err = time.Parse(time.RFC3339Nano, v)
		case dlqLastTry:
			d.LastAttempt, err = time.Parse(time.RFC3339Nano, v)
		}
		if err != nil {
			return DeadLetter{}, fmt.Errorf("parse dead letter header %s: %w", h.Key, err)
		}
	}
	if stage != stageWebhook {
		return DeadLetter{}, errors.New("parse dead letter: not written by the webhook executor (dlq.stage is not webhook)")
	}
	return d, nil
}
