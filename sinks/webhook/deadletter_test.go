package webhook

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestDeadLetterRoundTrip(t *testing.T) {
	first := time.Date(2026, 11, 22, 23, 0, 0, 0, time.UTC)
	src := &kgo.Record{Topic: "iotpipe.actions", Partition: 2, Offset: 77, Key: []byte("2/9/r/0"),
		Value: []byte(`{"key":"2/9/r/0"}`), Headers: []kgo.RecordHeader{{Key: "iot.src", Value: []byte("x")}}}
	req := &request{url: "https://user:pw@hooks.example.com/x"}
	tests := []struct {
		name string
		req  *request
		out  outcome
		want DeadLetter
	}{
		{"rejected", req, outcome{kind: kindRejected, status: 400, err: errors.New("http status 400 Bad Request"), body: "nope", attempts: 1, first: first, last: first.Add(time.Second)},
			DeadLetter{Kind: kindRejected, Status: 400, Attempts: 1, Error: "http status 400 Bad Request", URL: "https://user:xxxxx@hooks.example.com/x",
				Response: "nope", FirstAttempt: first, LastAttempt: first.Add(time.Second),
				Reason: "target answered 400 Bad Request (not retried) after 1 attempt(s)"}},
		{"exhausted", req, outcome{kind: kindExhausted, err: errors.New("dial tcp: connection refused"), attempts: 20, first: first, last: first.Add(90 * time.Second)},
			DeadLetter{Kind: kindExhausted, Attempts: 20, Error: "dial tcp: connection refused", URL: "https://user:xxxxx@hooks.example.com/x",
				FirstAttempt: first, LastAttempt: first.Add(90 * time.Second),
				Reason: "gave up after 20 attempt(s) over 1m30s: last error: dial tcp: connection refused"}},
		{"invalid", nil, outcome{kind: kindInvalid, err: errors.New(`action params have no "url" string`)},
			DeadLetter{Kind: kindInvalid, Error: `action params have no "url" string`,
				Reason: `invalid webhook action: action params have no "url" string`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := deadLetterRecord("iotpipe.dlq", src, tt.req, tt.out)
			if rec.Topic != "iotpipe.dlq" || string(rec.Key) != "2/9/r/0" || string(rec.Value) != string(src.Value) {
				t.Fatalf("record %s key %s value %s", rec.Topic, rec.Key, rec.Value)
			}
			if rec.Headers[0].Key != "iot.src" {
				t.Errorf("the action record's headers are not kept")
			}
			got, err := ParseDeadLetter(rec)
			if err != nil {
				t.Fatal(err)
			}
			tt.want.Key, tt.want.Action, tt.want.Source = "2/9/r/0", src.Value, "iotpipe.actions/2/77"
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("dead letter (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseDeadLetterRejectsOtherStages(t *testing.T) {
	rec := &kgo.Record{Headers: []kgo.RecordHeader{{Key: "dlq.stage", Value: []byte("rules")}}}
	if _, err := ParseDeadLetter(rec); err == nil || !strings.Contains(err.Error(), "not written by the webhook executor") {
		t.Fatalf("err = %v", err)
	}
}

func FuzzParseDeadLetter(f *testing.F) {
	f.Add("webhook", "400", "1", "2026-11-22T23:00:00Z")
	f.Add("webhook", "x", "-1", "yesterday")
	f.Fuzz(func(t *testing.T, stage, status, attempts, first string) {
		rec := &kgo.Record{Headers: []kgo.RecordHeader{
			{Key: dlqStage, Value: []byte(stage)}, {Key: dlqStatus, Value: []byte(status)},
			{Key: dlqAttempts, Value: []byte(attempts)}, {Key: dlqFirstTry, Value: []byte(first)},
		}}
		d, err := ParseDeadLetter(rec)
		if err == nil && stage != stageWebhook {
			t.Fatalf("accepted stage %q", stage)
		}
		if err != nil && (d.Kind != "" || d.Status != 0 || d.Attempts != 0 || !d.FirstAttempt.IsZero()) {
			t.Fatalf("partial result with error: %+v", d)
		}
	})
}
