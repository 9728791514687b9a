package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// A test device that subscribes to its shadow's delta, applies it and
// reports: a desired state set over HTTP reaches it, and its report
// clears the delta.
func TestShadowDeltaReachesDeviceAndReportClearsIt(t *testing.T) {
	in := newInstance(t)
	in.start()
	const thing = "lamp-1"
	o := paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", in.mqtt)).SetClientID(thing).SetAutoReconnect(false)
	dev := paho.NewClient(o)
	if tok := dev.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	applied := make(chan map[string]any, 4)
	prefix := "$aws/things/" + thing + "/shadow/"
	// The device: apply each delta to the lamp, then report the new state.
	if tok := dev.Subscribe(prefix+"update/delta", 1, func(c paho.Client, m paho.Message) {
		var d struct {
			State   map[string]any `json:"state"`
			Version int            `json:"version"`
		}
		if err := json.Unmarshal(m.Payload(), &d); err != nil {
			t.Errorf("delta %s: %v", m.Payload(), err)
			return
		}
		report, _ := json.Marshal(map[string]any{"state": map[string]any{"reported": d.State}})
		c.Publish(prefix+"update", 1, false, report)
		applied <- d.State
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	// An app sets the desired state over HTTP; the answer comes once applied.
	resp, err := http.Post(in.url("/things/"+thing+"/shadow"), "application/json",
		bytes.NewBufferString(`{"state":{"desired":{"color":"red","brightness":80}},"clientToken":"app-1"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"version":1`) || !strings.Contains(string(body), `"clientToken":"app-1"`) {
		t.Fatalf("HTTP update: %d %s", resp.StatusCode, body)
	}
	select {
	case d := <-applied:
		if d["color"] != "red" || d["brightness"] != float64(80) {
			t.Fatalf("delta applied by the device: %v", d)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the device never received the delta")
	}

	// The report clears the delta: a GET shows desired == reported and no delta.
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(in.url("/things/" + thing + "/shadow"))
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			State struct {
				Desired  map[string]any `json:"desired"`
				Reported map[string]any `json:"reported"`
				Delta    map[string]any `json:"delta"`
			} `json:"state"`
			Version int `json:"version"`
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("GET shadow: %d %s", resp.StatusCode, b)
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		if doc.State.Reported["color"] == "red" {
			if doc.State.Delta != nil || doc.Version != 2 {
				t.Fatalf("after the report: %s", b)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the report never reached the shadow: %s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Errors come back with AWS's codes: a version conflict is 409.
	resp, err = http.Post(in.url("/things/"+thing+"/shadow"), "application/json",
		bytes.NewBufferString(`{"state":{"desired":{"color":"blue"}},"version":1}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 409 || !strings.Contains(string(body), `"code":409`) {
		t.Fatalf("stale version: %d %s", resp.StatusCode, body)
	}
	// A thing without a shadow is 404.
	resp, err = http.Get(in.url("/things/nobody/shadow"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("missing shadow: %d", resp.StatusCode)
	}
}

// The shadow limits and the rate limit are the binary's configuration:
// with --shadow-max-size 64, --shadow-max-depth 2 and
// --shadow-rate-limit 2, requests over the limits get AWS's 413 and 400
// over HTTP, a small, shallow update is accepted, and of five quick
// updates of one thing (well under a second: at most two seconds, so at
// most four admitted) at least one gets 429 and none anything else.
func TestShadowLimitsFromFlags(t *testing.T) {
	in := newInstance(t)
	in.start("--shadow-max-size", "64", "--shadow-max-depth", "2", "--shadow-rate-limit", "2")
	post := func(thing, body string) (int, int, string) {
		t.Helper()
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/things/%s/shadow", in.http, thing), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var doc struct {
			Code int `json:"code"`
		}
		_ = json.Unmarshal(b, &doc)
		return resp.StatusCode, doc.Code, string(b)
	}
	for _, tt := range []struct {
		thing, body string
		code        int
	}{
		{"big", `{"state":{"reported":{"text":"` + strings.Repeat("x", 80) + `"}}}`, 413},
		{"deep", `{"state":{"reported":{"a":{"b":{"c":1}}}}}`, 400},
		{"shallow", `{"state":{"reported":{"a":{"b":1}}}}`, 200},
	} {
		if status, code, body := post(tt.thing, tt.body); status != tt.code || (tt.code != 200 && code != tt.code) {
			t.Fatalf("%s %s: %d %s, want %d", tt.thing, tt.body, status, body, tt.code)
		}
	}
	start, throttled := time.Now(), 0
	for i := range 5 {
		status, code, body := post("busy", fmt.Sprintf(`{"state":{"reported":{"n":%d}}}`, i))
		switch {
		case status == 429 && code == 429:
			throttled++
		case status != 200:
			t.Fatalf("update %d: %d %s", i, status, body)
		}
	}
	if time.Since(start) < time.Second && throttled == 0 {
		t.Fatal("five updates within a second, rate limit 2: none got 429")
	}
}
