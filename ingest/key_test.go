package ingest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
)

// One function keys an event for every way in: a shadow request is keyed
// by its thing however it arrives and whoever sends it, anything else by
// the client id.
func TestEventKeyEveryWayIn(t *testing.T) {
	// A short AckTimeout: the shadow API's requests answer 504 soon (no
	// shadow processor runs here); their records are in the log anyway.
	r := newRig(t, Options{AckTimeout: 200 * time.Millisecond})
	tests := []struct {
		way    string // mqtt, http (POST /topics/...), shadow (POST /things/{thing}/shadow[?name=])
		client string // MQTT client id or X-Client-Id ("" sends none)
		topic  string // for shadow: the topic the request becomes
		want   string
	}{
		{"mqtt", "sensor-1", "farm/t", "sensor-1"},
		{"mqtt", "app-1", "$aws/things/foo/shadow/update", "foo"},
		{"mqtt", "app-2", "$aws/things/foo/shadow/name/cfg/update", "foo"},
		{"http", "bar", "farm/t", "bar"},
		{"http", "", "farm/t", "http"},
		{"http", "bar", "$aws/things/foo/shadow/update", "foo"},
		{"http", "bar", "$aws/things/foo/shadow/name/cfg/update", "foo"},
		{"shadow", "bar", "$aws/things/foo/shadow/update", "foo"},
		{"shadow", "", "$aws/things/foo/shadow/update", "foo"},
		{"shadow", "bar", "$aws/things/foo/shadow/name/cfg/update", "foo"},
	}
	for i, tt := range tests {
		body := fmt.Sprintf(`{"state":{"reported":{"row":%d}}}`, i)
		switch tt.way {
		case "mqtt":
			c := client(t, r.addr, tt.client, false)
			// QoS 0: no ack to wait for (the short AckTimeout is for the shadow API).
			c.Publish(tt.topic, 0, false, body).Wait()
			c.Disconnect(10)
		case "http", "shadow":
			var req *http.Request
			if tt.way == "http" {
				req = httptest.NewRequest(http.MethodPost, "/topics/"+tt.topic, strings.NewReader(body))
				req.SetPathValue("topic", tt.topic)
			} else {
				thing := schemas.TopicThing(tt.topic)
				target := "/things/" + url.PathEscape(thing) + "/shadow"
				if name, ok := strings.CutPrefix(tt.topic, "$aws/things/"+thing+"/shadow/name/"); ok {
					target += "?name=" + strings.TrimSuffix(name, "/update")
				}
				req = httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
				req.SetPathValue("thing", thing)
			}
			if tt.client != "" {
				req.Header.Set("X-Client-Id", tt.client)
			}
			w := httptest.NewRecorder()
			if tt.way == "http" {
				r.srv.HTTPPublish(w, req)
			} else {
				r.srv.ShadowHTTP(w, req)
			}
			if w.Code != http.StatusOK && w.Code != http.StatusGatewayTimeout {
				t.Fatalf("row %d: %s %s: %d %s", i, tt.way, tt.topic, w.Code, w.Body)
			}
		}
	}
	keys := map[string]string{} // payload -> key
	for _, rec := range r.readAll(t, r.log.Topics().Events, len(tests)) {
		keys[string(rec.Value)] = string(rec.Key)
	}
	for i, tt := range tests {
		got, ok := keys[fmt.Sprintf(`{"state":{"reported":{"row":%d}}}`, i)]
		if !ok {
			t.Errorf("row %d (%s, %q, %s): not in the log", i, tt.way, tt.client, tt.topic)
		} else if got != tt.want {
			t.Errorf("row %d (%s, %q, %s): key %q, want %q", i, tt.way, tt.client, tt.topic, got, tt.want)
		}
	}
}
