package main

import (
	"fmt"
	"maps"
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
	code, out, stderr := rebuild()
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
