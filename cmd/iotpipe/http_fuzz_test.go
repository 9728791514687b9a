package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/encoding/json"
)

// fuzzNode starts an in-process `iotpipe run --dev --clickhouse off` (the
// MQTT/HTTP front and the processors over an embedded log, on free
// ports) for the fuzz targets of the HTTP API, and returns its base URL.
// Each fuzz worker process starts its own.
func fuzzNode(f *testing.F) string {
	f.Helper()
	port := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			f.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	dir := f.TempDir()
	cfg := defaultConfig()
	cfg.DataDir, cfg.RulesDir = filepath.Join(dir, "data"), filepath.Join(dir, "rules")
	cfg.Dev, cfg.ClickHouse, cfg.Partitions, cfg.KafkaPort = true, "off", 2, -1
	cfg.BootstrapToken = testAPIToken // http.DefaultTransport sends it
	cfg.MQTTAddr, cfg.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", port()), fmt.Sprintf("127.0.0.1:%d", port())
	// No TLS or WebSocket listeners: their default ports would be taken
	// by the first of the fuzz workers, each of which starts a node.
	cfg.MQTTSAddr, cfg.WSAddr, cfg.WSSAddr = "", "", ""
	n := &node{cfg: cfg, roles: roles{ingest: true, process: true}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.run(ctx) }()
	f.Cleanup(func() {
		cancel()
		<-done
	})
	base := "http://" + cfg.HTTPAddr
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			f.Fatal("the in-process node is not ready")
		}
	}
	// The targets' requests are authorized: a publish is taken.
	resp, err := http.Post(base+"/topics/dt/fuzz/telemetry?qos=1", "application/json", strings.NewReader(`{"t":1}`))
	if err != nil {
		f.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		f.Fatalf("a valid HTTP publish: %s %s", resp.Status, b)
	}
	return base
}

// validHeader reports whether v can be sent as a header value (what a
// client cannot send never reaches the handlers).
func validHeader(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return strings.TrimSpace(v) == v
}

// checkAnswer fails the fuzz target when an answer of the API is a 5xx
// other than 503 (log unavailable) or 504 (no answer in time), or, from
// the handlers (JSON), an error that is not an AWS error document with
// the status as its code.
func checkAnswer(t *testing.T, req string, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode >= 500 && resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("%s: %s %s", req, resp.Status, body)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Fatalf("%s: %s with %q, not JSON: %s", req, resp.Status, resp.Header.Get("Content-Type"), body)
		}
		return // the mux's own 404 and 405
	}
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("%s: %s, body not JSON (%v): %s", req, resp.Status, err, body)
	}
	if resp.StatusCode >= 400 {
		if code, _ := doc["code"].(float64); int(code) != resp.StatusCode || doc["message"] == nil {
			t.Fatalf("%s: %s, error document %s", req, resp.Status, body)
		}
	}
}

// fuzzClient is the fuzz targets' client: the handlers answer within
// their own deadlines (504 after the log's), so a request that takes a
// minute is a hang.
var fuzzClient = &http.Client{Timeout: time.Minute}

// do sends req and reads the answer; a broken connection (a handler
// that panicked) or no answer in a minute fails the fuzz target.
func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := fuzzClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v (did a handler panic?)", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read the answer: %v", req.Method, req.URL, err)
	}
	return resp, body
}

// FuzzHTTPPublish: POST /topics/{topic}?query with any topic, query,
// X-Client-Id and body never panics, never answers a 5xx but 503/504,
// and answers JSON: 200 with the record's partition and offset, or an
// AWS error document.
func FuzzHTTPPublish(f *testing.F) {
	f.Add("dt/dev-1/telemetry", "qos=1", "dev-1", []byte(`{"t":1}`))
	f.Add("a/+/b", "", "", []byte("x"))
	f.Add("$aws/events/presence/connected/x", "qos=0", "x", []byte("{}"))
	f.Add(strings.Repeat("a/", 10), "qos=2&retain=true", "c#", []byte(""))
	f.Add("$aws/things/lamp/shadow/update", "qos=0", "other", []byte(`{"state":{"reported":{"x":1e999}}}`))
	f.Add("t\x00u", "qos=%zz&qos=1", "a\xffb", bytes.Repeat([]byte("x"), 128<<10+1))
	f.Add("", "retain=1", strings.Repeat("c", 129), []byte(nil))
	f.Add("$aws/rules/r/"+strings.Repeat("t", 250), "qos=1", "", []byte("1"))
	base := fuzzNode(f)
	f.Fuzz(func(t *testing.T, topic, query, client string, body []byte) {
		if !validHeader(client) || strings.Contains(query, " ") {
			return // a space ends the request line's target: net/http's own 400
		}
		u := base + "/topics/" + (&url.URL{Path: topic}).EscapedPath() + "?" + query
		req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			return // no client sends it
		}
		if client != "" {
			req.Header.Set("X-Client-Id", client)
		}
		resp, answer := do(t, req)
		what := fmt.Sprintf("POST %q (topic %q, client %q, %d bytes)", u, topic, client, len(body))
		checkAnswer(t, what, resp, answer)
		if resp.StatusCode == http.StatusOK {
			var ok struct {
				Message   string
				Partition *int32
				Offset    *int64
			}
			if json.Unmarshal(answer, &ok) != nil || ok.Message != "OK" || ok.Partition == nil || ok.Offset == nil || *ok.Offset < 0 {
				t.Fatalf("%s: 200 %s", what, answer)
			}
		}
	})
}

// FuzzShadowHTTPBody: GET|POST|DELETE (and PUT) /things/{thing}/shadow
// with any thing, query (?name=...), X-Client-Id and body, applied by
// the shadow processor, never panics, never answers a 5xx but 503/504,
// and answers JSON: a shadow document or an AWS error document.
func FuzzShadowHTTPBody(f *testing.F) {
	f.Add(byte(1), "lamp-1", "", "lamp-1", []byte(`{"state":{"desired":{"color":"red"}},"clientToken":"t1"}`))
	f.Add(byte(1), "lamp-1", "name=config", "", []byte(`{"state":{"reported":{"a":{"b":[1,2,{"c":null}]}}},"version":1}`))
	f.Add(byte(0), "lamp-1", "name=config", "app", []byte(nil))
	f.Add(byte(2), "lamp-1", "", "", []byte(nil))
	f.Add(byte(1), "lamp-2", "", "", []byte(`{"state":{"reported":{"x":1e999}}}`))
	f.Add(byte(1), "lamp-2", "", "", []byte(`{"state":{"reported":`))
	f.Add(byte(1), "lamp-2", "", "", []byte(`{"state":{"desired":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}`))
	f.Add(byte(1), "lamp-2", "", "", []byte(`{"state":null,"version":-1,"clientToken":123}`))
	f.Add(byte(1), "lamp+3", "name=a/b", "x#", []byte(`[]`))
	f.Add(byte(3), "lamp\x00", "name=%zz", "", []byte(`{}`))
	f.Add(byte(1), strings.Repeat("t", 129), "", "", bytes.Repeat([]byte(" "), 9000))
	base := fuzzNode(f)
	methods := []string{http.MethodGet, http.MethodPost, http.MethodDelete, http.MethodPut}
	f.Fuzz(func(t *testing.T, method byte, thing, query, client string, body []byte) {
		if !validHeader(client) || strings.Contains(query, " ") {
			return
		}
		m := methods[int(method)%len(methods)]
		u := base + "/things/" + url.PathEscape(thing) + "/shadow?" + query
		req, err := http.NewRequest(m, u, bytes.NewReader(body))
		if err != nil {
			return // no client sends it
		}
		if client != "" {
			req.Header.Set("X-Client-Id", client)
		}
		resp, answer := do(t, req)
		what := fmt.Sprintf("%s %q (thing %q, client %q, body %q)", m, u, thing, client, body)
		checkAnswer(t, what, resp, answer)
		if resp.StatusCode == http.StatusOK && m != http.MethodDelete {
			var doc struct{ Version *int64 }
			if json.Unmarshal(answer, &doc) != nil || doc.Version == nil || *doc.Version < 1 {
				t.Fatalf("%s: 200 without a version: %s", what, answer)
			}
		}
	})
}
