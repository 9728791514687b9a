package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/twmb/franz-go/pkg/kfake"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "good.sql", "SELECT temperature FROM 'farm/+/t' WHERE temperature > 30")
	var out, errb bytes.Buffer
	if code := rulesMain(context.Background(), []string{"check", dir}, &out, &errb); code != 0 {
		t.Fatalf("check good: exit %d, stderr %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "ok: 1 rules in 1 files") || !strings.Contains(out.String(), "good") {
		t.Errorf("summary = %q", out.String())
	}

	bad := writeFile(t, dir, "bad.sql", "SELECT nosuch(a) FROM 'x/#/y'\nWHERE abs(1, 2) > 0")
	out.Reset()
	errb.Reset()
	if code := rulesMain(context.Background(), []string{"check", bad}, &out, &errb); code != 1 {
		t.Fatalf("check bad: exit %d, want 1", code)
	}
	want := []string{
		bad + ":1:8: unknown function nosuch",
		bad + ":1:23: bad topic filter 'x/#/y': '#' must be the whole last level",
		bad + ":2:7: abs takes 1 argument, got 2",
	}
	got := strings.Split(strings.TrimSpace(errb.String()), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", errb.String(), strings.Join(want, "\n"))
	}
}

func TestRulesTest(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "alerts.sql", `CREATE RULE hot AS
SELECT temperature, topic(4) AS id FROM 'farm/+/sensors/+' WHERE temperature > 30
THEN webhook(url => 'https://x.example/${topic(2)}');
SELECT VALUE status FROM 'status/#'`)
	input := writeFile(t, dir, "events.jsonl", `{"topic": "farm/f1/sensors/s9", "payload": {"temperature": 31.5}, "timestamp": 5}
{"topic": "farm/f1/sensors/s9", "payload": {"temperature": 12}}
{"topic": "status/s9", "payload": {"status": "ok"}}
`)
	var out, errb bytes.Buffer
	code := rulesMain(context.Background(), []string{"test", dir, "--input", input}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := `{"rule":"hot","output":{"id":"s9","temperature":31.5},"actions":[{"type":"webhook","params":{"url":"https://x.example/f1"}}]}
{"rule":"alerts","output":"ok"}
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestRulesUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := rulesMain(context.Background(), []string{"--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "check PATH...") {
		t.Errorf("--help: exit %d, %q", code, out.String())
	}
	if code := rulesMain(context.Background(), []string{"test", "x.sql"}, &out, &errb); code != 2 {
		t.Errorf("test without --input: exit %d, want 2", code)
	}
	if code := rulesMain(context.Background(), []string{"frobnicate"}, &out, &errb); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

// `rules check` lists the topics of the rules' kafka actions as not
// checked without --kafka; with it, it names the missing ones (exit 1 on
// another cluster; on an iotpipe embedded log, which creates them on
// first use, exit 0). A templated topic is noted as not checkable.
func TestRulesCheckKafkaTopics(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "k.sql", `CREATE RULE r1 AS SELECT * FROM 'a/#' THEN kafka(topic => 'alerts');
CREATE RULE r2 AS SELECT * FROM 'b/#' THEN kafka(topic => 'audit'), kafka(topic => 'alerts');
CREATE RULE r3 AS SELECT * FROM 'c/#' THEN kafka(topic => 'per-${topic(2)}')`)
	other, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "alerts"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	complete, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "alerts", "audit"))
	if err != nil {
		t.Fatal(err)
	}
	defer complete.Close()
	lg, err := eventlog.Open(t.Context(), eventlog.Options{DataDir: t.TempDir(), Port: -1, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	credsFile := filepath.Join(t.TempDir(), "creds.json")
	if b, err := json.Marshal(lg.Credentials()); err != nil || os.WriteFile(credsFile, b, 0o600) != nil {
		t.Fatal("write the log's credentials", err)
	}
	addr := func(b []string) string { return strings.Join(b, ",") }
	for _, c := range []struct {
		name         string
		args         []string
		env          string // IOTPIPE_KAFKA
		code         int
		stdout, errs []string
	}{
		{name: "without --kafka", args: []string{"check", dir}, code: 0,
			stdout: []string{"note: rule r3 names its kafka topic with a template: not checked",
				"kafka topics not checked (pass --kafka host:port to check they exist): alerts, audit"}},
		{name: "a topic missing on another cluster", args: []string{"check", dir, "--kafka", addr(other.ListenAddrs())}, code: 1,
			stdout: []string{"missing kafka topic audit on " + addr(other.ListenAddrs()) + " (rules r2)"},
			errs:   []string{"create the missing topics on the cluster, or their firings go to the DLQ"}},
		{name: "IOTPIPE_KAFKA", args: []string{"check", dir}, env: addr(other.ListenAddrs()), code: 1,
			stdout: []string{"missing kafka topic audit"}},
		{name: "all there", args: []string{"check", "--kafka", addr(complete.ListenAddrs()), dir}, code: 0,
			stdout: []string{"kafka topics exist on " + addr(complete.ListenAddrs()) + ": alerts, audit"}},
		{name: "embedded log", args: []string{"check", dir, "--kafka", addr(lg.Brokers()), "--kafka-credentials", credsFile}, code: 0,
			stdout: []string{"missing kafka topic alerts on", "(rules r1, r2)", "missing kafka topic audit on",
				"this is an iotpipe embedded log: it creates them on first use"}},
		{name: "unknown flag", args: []string{"check", dir, "--bogus"}, code: 2, errs: []string{"flag provided but not defined: -bogus"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("IOTPIPE_KAFKA", c.env)
			var out, errb bytes.Buffer
			if code := rulesMain(t.Context(), c.args, &out, &errb); code != c.code {
				t.Errorf("exit %d, want %d; stdout %q stderr %q", code, c.code, out.String(), errb.String())
			}
			for _, s := range c.stdout {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout %q does not say %q", out.String(), s)
				}
			}
			for _, s := range c.errs {
				if !strings.Contains(errb.String(), s) {
					t.Errorf("stderr %q does not say %q", errb.String(), s)
				}
			}
		})
	}
}
