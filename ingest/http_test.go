package ingest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// HTTP publishes the broker would refuse over MQTT are refused with the
// status and an AWS-shaped error document, and never reach the log.
func TestHTTPPublishRefusals(t *testing.T) {
	r := newRig(t, Options{})
	tests := []struct {
		name, topic, client string
		code                int
	}{
		{"presence event", "$aws/events/presence/connected/dev-1", "", http.StatusForbidden},
		{"presence event in another case", "$AWS/events/presence/connected/dev-1", "", http.StatusForbidden},
		{"shadow accepted", "$aws/things/lamp/shadow/update/accepted", "", http.StatusForbidden},
		{"named shadow delta", "$aws/things/lamp/shadow/name/cfg/update/delta", "", http.StatusForbidden},
		{"$SYS", "$SYS/broker/uptime", "", http.StatusForbidden},
		{"topic with 8 slashes", "1/2/3/4/5/6/7/8/9", "", http.StatusBadRequest},
		{"topic over 256 bytes", strings.Repeat("t", 257), "", http.StatusBadRequest},
		{"thing name over 128 bytes", "$aws/things/" + strings.Repeat("n", 129) + "/shadow/update", "", http.StatusBadRequest},
		{"client id over 128 bytes", "farm/1", strings.Repeat("c", 129), http.StatusBadRequest},
		{"client id with +", "farm/1", "a+b", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/topics/x", strings.NewReader(`{"forged":true}`))
			req.SetPathValue("topic", tt.topic)
			if tt.client != "" {
				req.Header.Set("X-Client-Id", tt.client)
			}
			w := httptest.NewRecorder()
			r.srv.HTTPPublish(w, req)
			expectAWSError(t, w, tt.code)
		})
	}
	if records := r.readAll(t, r.srv.opts.Topics.Events, 0); len(records) != 0 {
		t.Fatalf("%d records reached the log", len(records))
	}
}

// expectAWSError fails unless w answered code with an error document in
// the shape of AWS IoT's: {"code","message","timestamp"}.
func expectAWSError(t *testing.T, w *httptest.ResponseRecorder, code int) {
	t.Helper()
	var body struct {
		Code      int    `json:"code"`
		Message   string `json:"message"`
		Timestamp int64  `json:"timestamp"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	if w.Code != code || body.Code != code || body.Message == "" || body.Timestamp == 0 {
		t.Fatalf("got %d %s, want %d with an AWS error document", w.Code, w.Body, code)
	}
}
