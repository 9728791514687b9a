package mqttload

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestCommandUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		wantStderr string
	}{
		{"help", []string{"--help"}, 0, "Publish MQTT 3.1.1 load"},
		{"bad qos", []string{"--qos", "2"}, 2, "must be 0 or 1"},
		{"stray argument", []string{"now"}, 2, "unexpected arguments"},
		{"unknown flag", []string{"--bogus"}, 2, "flag provided but not defined"},
		{"invalid size", []string{"--size", "5", "--addr", "127.0.0.1:1"}, 1, "size must be between"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := Command(context.Background(), tt.args, &stdout, &stderr); code != tt.code {
				t.Errorf("exit %d, want %d; stderr %s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

func TestCommandJSON(t *testing.T) {
	addr, _ := startMochi(t)
	var stdout, stderr bytes.Buffer
	code := Command(testCtx(t, 60*time.Second), []string{"--addr", addr, "--conns", "5", "--qos", "1", "--count", "2000", "--json", "--subscribe", "bench/#", "--subscribe-qos", "1"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d; stderr %s", code, stderr.String())
	}
	var res Result
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("stdout is not a JSON result: %v\n%s", err, stdout.String())
	}
	if res.Acked != 2000 || res.TotalReceived != 2000 || res.Latency.Count != 2000 || res.Latency.P99 <= 0 {
		t.Errorf("result %+v", res)
	}
}

func TestCommandSummaryAndProgress(t *testing.T) {
	addr, _ := startMochi(t)
	var stdout, stderr bytes.Buffer
	code := Command(testCtx(t, 60*time.Second), []string{"--addr", addr, "--conns", "3", "--qos", "1", "--duration", "1500ms", "--rate", "3000"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d; stderr %s", code, stderr.String())
	}
	for _, want := range []string{"3 connections, QoS 1", "target 3000 msg/s", "acked", "latency     p50", "errors      0"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "measure sent") || !strings.Contains(stderr.String(), "acked") {
		t.Errorf("no progress line on stderr:\n%s", stderr.String())
	}
}

func TestCommandFailsOnBrokenConnection(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := Command(context.Background(), []string{"--addr", freeAddr(t), "--conns", "1", "--count", "10"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "dialing") {
		t.Errorf("exit %d, stderr %q; want 1 and a dial error", code, stderr.String())
	}
}
