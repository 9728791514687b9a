package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRebuildEqualsLiveState: iotpipe rebuild refuses a running node;
// on the stopped node, rebuilding from the changelog (with the state
// dir intact, then lost) and from the events gives last-seen, shadows
// and rules state (PEWMA, windows, timers) equal to the live state byte
// for byte; the node starts again on it.
func TestRebuildEqualsLiveState(t *testing.T) {
	in := newInstance(t)
	writeRule(t, in, "state.sql", `CREATE RULE score AS SELECT dev, pewma(seq) AS a FROM 'rb/+' WHERE a.anomaly;
CREATE RULE win AS SELECT clientid() AS device, count(*) AS n FROM 'rb/+' GROUP BY TUMBLE(INTERVAL 1 HOUR), clientid();
CREATE RULE stuck AS SELECT dev FROM 'rb/+' WHERE seq >= 0 FOR 1 HOUR;
`)
	in.start()
	l := startLoad(t, in, "rb/", 4, 10*time.Millisecond, true)
	for i := range 5 {
		mosquittoPub(t, in, fmt.Sprintf("lamp-%d", i), fmt.Sprintf("$aws/things/lamp-%d/shadow/update", i), fmt.Sprintf(`{"state":{"reported":{"on":true,"level":%d}}}`, i))
	}
	time.Sleep(2 * time.Second)
	l.end()
	rebuild := func(extra ...string) (int, string, string) {
		return runIotpipe(t, append([]string{"rebuild", "--data-dir", in.dataDir, "--kafka-port", strconv.Itoa(in.kafka),
			"--partitions", "4", "--rules", filepath.Join(in.dataDir, "rules")}, extra...)...)
	}
	if code, _, stderr := rebuild(); code != 1 || !strings.Contains(stderr, "stop it first") {
		t.Errorf("rebuild of a running node: exit %d, %s", code, stderr)
	}
	// The running node, through its API, while publishes go on: the
	// state rebuilt from the events and from the changelog equals the
	// live state, and no partition was fenced or restored.
	l2 := startLoad(t, in, "rb/", 2, 10*time.Millisecond, true)
	live := func(extra ...string) (int, string, string) {
		return runIotpipe(t, append([]string{"rebuild", "--running", "--api", in.url(""), "--token", testAPIToken, "--data-dir", in.dataDir}, extra...)...)
	}
	code, out, stderr := live("--from-events")
	if code != 0 || !strings.Contains(out, "rebuilt from the events: 4 partitions") {
		t.Fatalf("rebuild --running --from-events: exit %d\n%s%s", code, out, stderr)
	}
	for _, n := range []string{"lastseen", "rules", "shadow"} {
		if !strings.Contains(out, "  "+n) || strings.Count(out, "0 differed from the local state, 0 written to the changelog") != 3 {
			t.Errorf("rebuild --running --from-events report:\n%s", out)
		}
	}
	if code, out, stderr = live("--processor", "shadows,rules"); code != 0 || !strings.Contains(out, "rebuilt from the changelog: 4 partitions") || strings.Count(out, " 0 differed") != 2 {
		t.Fatalf("rebuild --running: exit %d\n%s%s", code, out, stderr)
	}
	if resp, err := http.Post(in.url("/api/rebuild"), "application/json", strings.NewReader(`{"processor": "bogus"}`)); err != nil || resp.StatusCode != 400 {
		t.Errorf("POST /api/rebuild of a bogus processor: %v %v", resp, err)
	}
	var last struct {
		ID    int    `json:"id"`
		State string `json:"state"`
		Done  int    `json:"partitions_done"`
	}
	if resp, err := http.Get(in.url("/api/rebuild")); err != nil {
		t.Error(err)
	} else if err := json.NewDecoder(resp.Body).Decode(&last); err != nil || last.ID != 2 || last.State != "done" || last.Done != 4 {
		t.Errorf("GET /api/rebuild: %+v %v", last, err)
	}
	l2.end()
	if n := metricValue(t, in, "iotpipe_processor_events_total"); n <= 0 {
		t.Fatalf("iotpipe_processor_events_total = %v", n)
	}
	for _, m := range []string{"iotpipe_processor_aborted_batches_total", "iotpipe_processor_restores_total"} {
		if v := metricValue(t, in, m); v != 0 {
			t.Errorf("%s = %v after the live rebuilds, want 0", m, v)
		}
	}
	time.Sleep(2 * time.Second) // the processors catch up
	in.stop()
	state := filepath.Join(in.dataDir, "state")
	want := in.dumpState(state)
	if len(want["shadow"]) < 5 || len(want["rules"]) < 12 || len(want["lastseen"]) < 9 {
		t.Fatalf("live state: %d shadow, %d rules, %d lastseen keys", len(want["shadow"]), len(want["rules"]), len(want["lastseen"]))
	}
	check := func(stage string) {
		t.Helper()
		got := in.dumpState(state)
		for p, kv := range want {
			if !maps.Equal(kv, got[p]) {
				t.Errorf("%s: %s state differs from the live one (%d keys, live %d)", stage, p, len(got[p]), len(kv))
			}
		}
	}
	code, out, stderr = rebuild()
	if code != 0 || !strings.Contains(out, "rebuilt from the changelog: 4 partitions") || !strings.Contains(out, "0 differed") {
		t.Fatalf("rebuild: exit %d\n%s%s", code, out, stderr)
	}
	check("from the changelog")
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	if code, out, stderr = rebuild("--processor", "shadows"); code != 0 || !strings.Contains(out, "restored whole") {
		t.Fatalf("rebuild of a lost state dir: exit %d\n%s%s", code, out, stderr)
	}
	check("a lost state dir, from the changelog")
	if code, out, stderr = rebuild("--from-events"); code != 0 || strings.Contains(out, "written to the changelog") && !strings.Contains(out, "0 written") {
		t.Fatalf("rebuild --from-events: exit %d\n%s%s", code, out, stderr)
	}
	for _, n := range []string{"lastseen", "rules", "shadow"} {
		if !strings.Contains(out, "  "+n) || !strings.Contains(out, "0 differed from the local state, 0 written to the changelog") {
			t.Errorf("rebuild --from-events report:\n%s", out)
		}
	}
	check("from the events")
	in.start()
	// Served once the node has started its partitions again.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		m, code := in.thing("lamp-3")
		if code == 200 && m["thing"] == "lamp-3" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the rebuild: /api/things/lamp-3 %d %v", code, m)
		}
	}
	in.stop()
}
