package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
