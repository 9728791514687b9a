package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kadm"
)

// replayRules are the live rules of the replay acceptance test: an
// alert over a threshold, an anomaly, a door that must stay open for 2
// seconds; the alert and the door call a webhook.
func replayRules(rx *hookReceiver, threshold int) string {
	return fmt.Sprintf(`CREATE RULE hot AS SELECT temp, clientid() AS dev FROM 'sensors/+/temp' WHERE temp > %d
  THEN webhook(url => '%s');
CREATE RULE spike AS SELECT temp, clientid() AS dev, pewma(temp) AS p FROM 'sensors/+/temp' WHERE p.anomaly;
CREATE RULE door AS SELECT topic(2) AS door FROM 'doors/+/state' WHERE open = true FOR 2 SECONDS RESOLVE
  THEN webhook(url => '%s');
`, threshold, rx.url("/hot"), rx.url("/door"))
}

// run runs the iotpipe binary and returns its exit status, stdout and
// stderr.
func runIotpipe(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(iotpipeBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// endOffsets returns the end offset of every partition of every topic
// on the instance's log.
func (in *instance) endOffsets() map[string]int64 {
	in.t.Helper()
	cl, err := in.logClients().Client()
	if err != nil {
		in.t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	topics, err := adm.ListTopics(ctx)
	if err != nil {
		in.t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, topics.Names()...)
	if err != nil {
		in.t.Fatal(err)
	}
	out := map[string]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[fmt.Sprintf("%s/%d", o.Topic, o.Partition)] = o.Offset })
	return out
}

// publishHistory publishes the known history: three sensors every 100
// ms for 6 s (s1 reads 90 at 4 s), door d1 opened at 1 s and never
// reported again, door d2 opened at 1.5 s and closed 300 ms later. It
// returns when the last publish was acknowledged, with the time it
// started.
func publishHistory(t *testing.T, in *instance) time.Time {
	t.Helper()
	clients := map[string]paho.Client{}
	for _, id := range []string{"s0", "s1", "s2", "d1", "d2"} {
		o := paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", in.mqtt)).SetClientID(id)
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", id, tok.Error())
		}
		defer c.Disconnect(0)
		clients[id] = c
	}
	pub := func(id, topic, payload string) {
		tok := clients[id].Publish(topic, 1, false, payload)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s %s: %v", id, topic, tok.Error())
		}
	}
	start := time.Now()
	for i := range 60 {
		time.Sleep(time.Until(start.Add(time.Duration(i) * 100 * time.Millisecond)))
		for s := range 3 {
			temp := fmt.Sprintf("%.1f", 20+0.1*float64((i+s)%3))
			if s == 1 && i == 40 {
				temp = "90"
			}
			pub(fmt.Sprintf("s%d", s), fmt.Sprintf("sensors/s%d/temp", s), `{"temp":`+temp+`}`)
		}
		switch i {
		case 10:
			pub("d1", "doors/d1/state", `{"open":true}`)
		case 15:
			pub("d2", "doors/d2/state", `{"open":true}`)
		case 18:
			pub("d2", "doors/d2/state", `{"open":false}`)
		}
	}
	return start
}

// TestReplayAcceptance: a known history published over MQTT (sensors,
// an anomaly, a door that stays open), then replayed over a window that
// cuts part of it: exactly the expected outputs, the same as rules test
// over iotpipe events --json of that window; --diff of a threshold
// change reports exactly the added and removed outputs; --trace says
// why; and replay and events write to no topic and call no webhook.
func TestReplayAcceptance(t *testing.T) {
	rx := newHookReceiver(t, "", 200)
	in := newInstance(t)
	writeRule(t, in, "rules.sql", replayRules(rx, 50))
	in.start()
	start := publishHistory(t, in)
	// The live pipeline called the webhook for the hot reading and the
	// open door.
	for deadline := time.Now().Add(60 * time.Second); len(rx.delivered()) < 2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("live webhooks: %v, want the hot reading and the open door", rx.delivered())
		}
	}
	time.Sleep(2 * time.Second)
	offsets, requests := in.endOffsets(), rx.requests.Load()

	kafka := fmt.Sprintf("127.0.0.1:%d", in.kafka)
	from, to := start.Add(500*time.Millisecond).Format(time.RFC3339Nano), start.Add(5500*time.Millisecond).Format(time.RFC3339Nano)
	window := []string{"--kafka", kafka, "--data-dir", in.dataDir, "--from", from, "--to", to}
	rulesDir := filepath.Join(in.dataDir, "rules")
	dir := t.TempDir()

	code, events, stderr := runIotpipe(t, append([]string{"events", "--json", "--export", filepath.Join(dir, "events.parquet")}, window...)...)
	if code != 0 {
		t.Fatalf("events: %d %s", code, stderr)
	}
	input := filepath.Join(dir, "window.jsonl")
	if err := os.WriteFile(input, []byte(events), 0o644); err != nil {
		t.Fatal(err)
	}
	code, want, stderr := runIotpipe(t, "rules", "test", rulesDir, "--input", input)
	if code != 0 {
		t.Fatalf("rules test: %d %s", code, stderr)
	}
	parquet := filepath.Join(dir, "outputs.parquet")
	code, got, summary := runIotpipe(t, append([]string{"replay", "--rules", rulesDir, "--export", parquet}, window...)...)
	if code != 0 {
		t.Fatalf("replay: %d %s", code, summary)
	}
	if got != want {
		t.Errorf("replay:\n%s\nrules test over events --json of the window:\n%s", got, want)
	}
	lines := strings.Split(strings.TrimSpace(got), "\n")
	byRule := map[string][]string{}
	for _, l := range lines {
		var o struct{ Rule string }
		if err := json.Unmarshal([]byte(l), &o); err != nil {
			t.Fatalf("output %q: %v", l, err)
		}
		byRule[o.Rule] = append(byRule[o.Rule], l)
	}
	wantHot := `{"rule":"hot","output":{"dev":"s1","temp":90},"actions":[{"type":"webhook","params":{"url":"` + rx.url("/hot") + `"}}]}`
	wantDoor := `{"rule":"door","output":{"door":"d1"},"actions":[{"type":"webhook","params":{"url":"` + rx.url("/door") + `"}}]}`
	if strings.Join(byRule["hot"], "\n") != wantHot || strings.Join(byRule["door"], "\n") != wantDoor {
		t.Errorf("hot and door outputs:\n%s\n%s\nwant\n%s\n%s", strings.Join(byRule["hot"], "\n"), strings.Join(byRule["door"], "\n"), wantHot, wantDoor)
	}
	if len(byRule["spike"]) == 0 || !strings.Contains(byRule["spike"][0], `"temp":90`) {
		t.Errorf("spike outputs %q: the first must be s1's 90", byRule["spike"])
	}
	if !strings.Contains(summary, "replay: ") || !strings.Contains(summary, "hot ") {
		t.Errorf("summary on stderr: %s", summary)
	}
	for _, f := range []string{parquet, filepath.Join(dir, "events.parquet")} {
		if b, err := os.ReadFile(f); err != nil || !bytes.HasPrefix(b, []byte("PAR1")) || !bytes.HasSuffix(b, []byte("PAR1")) {
			t.Errorf("--export wrote no Parquet file %s: %v", f, err)
		}
	}

	// --diff: the threshold lowered to 15 adds exactly the readings
	// between 15 and 50; raised back, removes exactly those.
	lower := filepath.Join(dir, "lower")
	os.MkdirAll(lower, 0o755)
	os.WriteFile(filepath.Join(lower, "rules.sql"), []byte(replayRules(rx, 15)), 0o644)
	_, lowered, _ := runIotpipe(t, append([]string{"replay", "--rules", lower}, window...)...)
	var extra []string
	for _, l := range strings.Split(strings.TrimSpace(lowered), "\n") {
		if strings.HasPrefix(l, `{"rule":"hot"`) && l != wantHot {
			extra = append(extra, l)
		}
	}
	slices.Sort(extra)
	if len(extra) < 100 {
		t.Fatalf("the lowered threshold gives %d more outputs, want about 150", len(extra))
	}
	for _, c := range []struct {
		old, new, kind string
	}{{rulesDir, lower, "added"}, {lower, rulesDir, "removed"}} {
		code, out, stderr := runIotpipe(t, append([]string{"replay", "--json", "--diff", c.old, c.new}, window...)...)
		if code != 1 {
			t.Errorf("--diff exit status %d, want 1 (they differ): %s", code, stderr)
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var ch struct {
				Change, Rule string
				Old, New     json.RawMessage
			}
			if err := json.Unmarshal([]byte(l), &ch); err != nil {
				t.Fatalf("diff line %q: %v", l, err)
			}
			if ch.Change != c.kind || ch.Rule != "hot" {
				t.Errorf("diff %s -> %s: %s", c.old, c.new, l)
			}
			lines = append(lines, string(ch.New)+string(ch.Old))
		}
		slices.Sort(lines)
		if !slices.Equal(lines, extra) {
			t.Errorf("diff %s: %d changes, want exactly the %d outputs between the thresholds", c.kind, len(lines), len(extra))
		}
	}
	if code, out, _ := runIotpipe(t, append([]string{"replay", "--diff", rulesDir, rulesDir}, window...)...); code != 0 || strings.Count(out, "no change") != 3 {
		t.Errorf("--diff of the same rules: exit %d\n%s", code, out)
	}

	// --trace of the door that stayed open.
	code, trace, stderr := runIotpipe(t, append([]string{"replay", "--trace", "--thing", "d1", "--rules", rulesDir}, window...)...)
	if code != 0 || !strings.Contains(trace, "door   WHERE true; FOR 2s: the condition holds") || !strings.Contains(trace, "  hot    topic does not match FROM 'sensors/+/temp'") {
		t.Errorf("trace (exit %d, %s):\n%s", code, stderr, trace)
	}
	// events as text, of one thing.
	code, text, _ := runIotpipe(t, append([]string{"events", "--thing", "s1"}, window...)...)
	if n := strings.Count(text, " sensors/s1/temp "); code != 0 || n < 45 || n > 55 || strings.Count(text, "\n") != n {
		t.Errorf("events --thing s1: exit %d, %d readings of s1 in 5 s:\n%s", code, n, text)
	}

	// Nothing was written: every topic's end offsets, and the webhook.
	time.Sleep(time.Second)
	if after := in.endOffsets(); !maps.Equal(after, offsets) {
		t.Errorf("end offsets changed:\nbefore %v\nafter  %v", offsets, after)
	}
	if n := rx.requests.Load(); n != requests {
		t.Errorf("the webhook receiver got %d requests during the replays", n-requests)
	}
}

// TestEventsFollowStopsOnInterrupt: iotpipe events --follow prints new
// events as they come, and Ctrl-C (SIGINT) stops it cleanly: whole lines
// only, "interrupted" on stderr, exit status 130.
func TestEventsFollowStopsOnInterrupt(t *testing.T) {
	in := newInstance(t)
	in.start()
	mosquittoPub(t, in, "f1", "follow/f1", `{"n":1}`)
	cmd := exec.Command(iotpipeBin, "events", "--follow", "--json", "--kafka", fmt.Sprintf("127.0.0.1:%d", in.kafka), "--data-dir", in.dataDir, "--topic", "follow/#")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		t.Helper()
		select {
		case l := <-lines:
			return l
		case <-time.After(30 * time.Second):
			t.Fatal("no event printed")
		}
		return ""
	}
	if l := next(); !strings.Contains(l, `"payload":{"n":1}`) {
		t.Fatalf("first line %q", l)
	}
	mosquittoPub(t, in, "f1", "follow/f1", `{"n":2}`)
	if l := next(); !strings.Contains(l, `"payload":{"n":2}`) {
		t.Fatalf("followed line %q", l)
	}
	cmd.Process.Signal(syscall.SIGINT)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitInterrupted || !strings.Contains(stderr.String(), "iotpipe events: interrupted") {
		t.Errorf("after SIGINT: %v, stderr %q", err, stderr.String())
	}
	for l := range lines {
		t.Errorf("more output after SIGINT: %q", l)
	}
}

// TestReplayToMQTT: iotpipe replay --to-mqtt re-publishes the selected
// history over MQTT under a prefix, in order, with its payloads and the
// spacing it had (at --speed 1 no two arrive closer than most of the
// original gap), or as fast as acknowledged with --speed max; a bad
// prefix or speed is refused before anything is read.
func TestReplayToMQTT(t *testing.T) {
	in := newInstance(t)
	in.start()
	for i := range 4 {
		if i > 0 {
			time.Sleep(400 * time.Millisecond)
		}
		mosquittoPub(t, in, "d1", "hist/d1", fmt.Sprintf(`{"n":%d}`, i))
	}
	type got struct {
		topic, payload string
		at             time.Time
	}
	arrived := make(chan got, 100)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", in.mqtt)).SetClientID("again-sub").SetAutoReconnect(false))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	if tok := sub.Subscribe("again/#", 1, func(_ paho.Client, m paho.Message) {
		arrived <- got{m.Topic(), string(m.Payload()), time.Now()}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	replayTo := func(prefix, speed string) (int, string) {
		t.Helper()
		code, _, stderr := runIotpipe(t, "replay", "--to-mqtt", prefix, "--speed", speed, "--topic", "hist/#",
			"--kafka", fmt.Sprintf("127.0.0.1:%d", in.kafka), "--data-dir", in.dataDir, "--mqtt", fmt.Sprintf("127.0.0.1:%d", in.mqtt))
		return code, stderr
	}
	receive := func(prefix string) []got {
		t.Helper()
		var out []got
		for len(out) < 4 {
			select {
			case g := <-arrived:
				out = append(out, g)
			case <-time.After(30 * time.Second):
				t.Fatalf("%d of 4 re-published events arrived", len(out))
			}
		}
		for i, g := range out {
			if g.topic != prefix+"/hist/d1" || g.payload != fmt.Sprintf(`{"n":%d}`, i) {
				t.Errorf("arrival %d: %s %s", i, g.topic, g.payload)
			}
		}
		return out
	}
	code, stderr := replayTo("again/slow", "1")
	if code != 0 || !strings.Contains(stderr, "4 published to again/slow/..., 0 failed") {
		t.Fatalf("replay --to-mqtt: exit %d\n%s", code, stderr)
	}
	slow := receive("again/slow")
	for i := 1; i < len(slow); i++ {
		if gap := slow[i].at.Sub(slow[i-1].at); gap < 300*time.Millisecond {
			t.Errorf("at --speed 1, arrivals %d and %d %v apart; they were published 400ms+ apart", i-1, i, gap)
		}
	}
	if code, stderr = replayTo("again/fast", "max"); code != 0 || !strings.Contains(stderr, "4 published to again/fast/...") {
		t.Fatalf("replay --to-mqtt --speed max: exit %d\n%s", code, stderr)
	}
	receive("again/fast")
	for _, c := range [][2]string{{"again/+", "1"}, {"$aws/x", "1"}, {"again", "fast"}, {"again", "0"}} {
		if code, stderr := replayTo(c[0], c[1]); code != 2 {
			t.Errorf("--to-mqtt %q --speed %q: exit %d, %s", c[0], c[1], code, stderr)
		}
	}
}
