package web

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
)

func TestStatic(t *testing.T) {
	srv := httptest.NewServer(Static())
	defer srv.Close()
	for _, tc := range []struct {
		path, contains string
		code           int
	}{
		{"/", `id="token-dialog"`, 200},
		{"/assets/js/app.js", "askToken", 0},
		{"/assets/js/api.js", "Authorization", 200},
		{"/assets/vendor/uplot/uPlot.iife.min.js", "uPlot", 200},
		{"/assets/vendor/uplot/LICENSE", "MIT", 200},
		{"/assets/nope.js", "", 404},
		{"/index.html/x", "", 404},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := tc.code
		if want == 0 {
			want = 200
		}
		if resp.StatusCode != want || !strings.Contains(string(b), tc.contains) {
			t.Errorf("GET %s: %d, want %d with %q", tc.path, resp.StatusCode, want, tc.contains)
		}
	}
}

// newTestDashboard is a Dashboard without a log or ClickHouse.
func newTestDashboard() *Dashboard { return New(Options{}) }

func TestHandlerWithoutClickHouse(t *testing.T) {
	d := newTestDashboard()
	d.fleet.publish("gh-1", "s/gh-1", time.Now().UnixMilli())
	d.commands.add("gh-1", CommandRef{ID: "c1", Rule: "r", FiredAt: 1})
	d.commands.add("gh-1", CommandRef{ID: "c2", Rule: "r", FiredAt: 2})
	if d.commands.add("gh-1", CommandRef{ID: "c1", Rule: "r", FiredAt: 1}) {
		t.Error("a repeated command was kept twice")
	}
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	get := func(path string, code int, v any) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != code {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("GET %s: %d %s, want %d", path, resp.StatusCode, b, code)
		}
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	var page FleetPage
	get("/api/dashboard/fleet?q=GH", 200, &page)
	if page.Total != 1 || len(page.Things) != 1 || page.Things[0].Messages != 1 {
		t.Errorf("fleet: %+v", page)
	}
	var e struct {
		Message string `json:"message"`
	}
	get("/api/dashboard/fleet?status=online", 400, &e)
	if !strings.Contains(e.Message, `status "online"`) {
		t.Errorf("bad status: %q", e.Message)
	}
	var v ThingView
	get("/api/dashboard/things/gh-1", 200, &v)
	if !v.Known || v.Thing.Messages != 1 || len(v.Commands) != 2 || v.Commands[0].ID != "c2" || len(v.Errors) != 3 ||
		!strings.Contains(v.Errors[0], "no ClickHouse") {
		t.Errorf("thing: %+v", v)
	}
	get("/api/dashboard/things/gh-1/series?field=temperature", 503, &e)
	if !strings.Contains(e.Message, "no ClickHouse") {
		t.Errorf("series without ClickHouse: %q", e.Message)
	}
	get("/api/dashboard/things/gh-1/series?field=t&minutes=0", 400, &e)
	get("/api/dashboard/things/gh-1/series", 400, &e)
}

// readEvent reads the next server-sent event's name and data.
func readEvent(t *testing.T, r *bufio.Reader) (string, string) {
	t.Helper()
	var event, data string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && event != "":
			return event, data
		case strings.HasPrefix(line, "event: "):
			event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
}

func TestLive(t *testing.T) {
	d := newTestDashboard()
	d.ready.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.broadcast(ctx)
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	open := func(q string) *bufio.Reader {
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/dashboard/live"+q, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("Content-Type %q", ct)
		}
		r := bufio.NewReader(resp.Body)
		if ev, data := readEvent(t, r); ev != "hello" || data != `{"ready":true}` {
			t.Fatalf("first event %s %s", ev, data)
		}
		return r
	}
	fleetStream := open("")
	thingStream := open("?thing=gh-1")
	if !d.hub.watched("gh-1") || d.hub.watched("gh-2") || !d.hub.fleetWatched() {
		t.Fatal("hub does not know the streams")
	}
	d.fleet.publish("gh-1", "s/gh-1", time.Now().UnixMilli())
	ev, data := readEvent(t, fleetStream)
	var rows []Thing
	if ev != "rows" || json.Unmarshal([]byte(data), &rows) != nil || len(rows) != 1 || rows[0].Name != "gh-1" {
		t.Fatalf("fleet stream: %s %s", ev, data)
	}
	d.onShadow(&kgo.Record{Key: []byte("gh-1/cfg"), Value: []byte(`{"state":{},"version":7}`)})
	d.onShadow(&kgo.Record{Key: []byte("gh-2"), Value: []byte(`{"version":1}`)}) // not watched
	d.onShadow(&kgo.Record{Key: []byte("gh-1"), Value: nil})
	for _, want := range []string{`{"thing":"gh-1","shadow":"cfg","version":7,"deleted":false}`, `{"thing":"gh-1","shadow":"","deleted":true}`} {
		if ev, data := readEvent(t, thingStream); ev != "shadow" || data != want {
			t.Errorf("thing stream: %s %s, want shadow %s", ev, data, want)
		}
	}
	a, _ := json.Marshal(schemas.Anomaly{Thing: "gh-1", Metric: "t", Value: 90, Anomaly: true, Time: 5, Output: map[string]any{"t": 90}})
	d.onAnomaly(&kgo.Record{Value: a, Timestamp: time.Now()})
	if ev, data := readEvent(t, thingStream); ev != "anomaly" || !strings.Contains(data, `"value":90`) || strings.Contains(data, "output") {
		t.Errorf("thing stream: %s %s, want the anomaly without its output", ev, data)
	}
	if r, _ := d.fleet.thing("gh-1", time.Now().UnixMilli()); r.Anomalies != 1 {
		t.Errorf("open anomalies %d, want 1", r.Anomalies)
	}
	// Run's end ends the streams.
	close(d.done)
	for {
		if _, err := thingStream.ReadString('\n'); err != nil {
			break
		}
	}
}

func TestLiveLost(t *testing.T) {
	h := newHub()
	s := h.subscribe("x")
	for i := range liveQueue + 1 {
		h.thing("x", "event", i)
	}
	if !h.takeLost(s) || h.takeLost(s) {
		t.Error("a full stream's drop is not reported once")
	}
	h.unsubscribe("x", s)
	if h.watched("x") {
		t.Error("still watched after unsubscribe")
	}
}

func TestDLQRing(t *testing.T) {
	var q dlqRing
	for i := range 3*dlqKeep + 5 {
		q.add(&kgo.Record{Offset: int64(i), Timestamp: time.UnixMilli(int64(i)), Value: []byte("v"), Headers: []kgo.RecordHeader{
			{Key: schemas.HeaderDLQStage, Value: []byte("rules")}, {Key: schemas.HeaderDLQReason, Value: []byte("bad")}, {Key: "dlq.rule", Value: []byte("r1")}}})
	}
	got := q.newest(2)
	if len(got) != 2 || got[0].Offset != 3*dlqKeep+4 || got[1].Offset != 3*dlqKeep+3 || got[0].Stage != "rules" || got[0].Reason != "bad" || got[0].Headers["dlq.rule"] != "r1" {
		t.Errorf("newest: %+v", got)
	}
	if n := len(q.newest(10 * dlqKeep)); n < dlqKeep || n > 2*dlqKeep {
		t.Errorf("kept %d, want %d to %d", n, dlqKeep, 2*dlqKeep)
	}
}

func TestShown(t *testing.T) {
	if s := shown([]byte("ok")); s != "ok" {
		t.Error(s)
	}
	if s := shown([]byte{0xff, 0xfe}); s != "(2 bytes, not UTF-8)" {
		t.Error(s)
	}
	if s := shown([]byte(strings.Repeat("a", maxShown+10))); len(s) != maxShown+len("…") {
		t.Errorf("cut to %d", len(s))
	}
}
