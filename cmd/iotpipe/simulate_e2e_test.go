package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/devices/fleet"
	"github.com/iotpipe/iotpipe/devices/profile"
)

// The simulator's 50 greenhouse devices for 10 s (disconnects, Wills and
// shadow reports included) against `iotpipe run` with its embedded
// ClickHouse: every acknowledged point is a telemetry row exactly once,
// counted by the device and seq in its payload.
func TestSimulatedFleetReachesClickHouseOnce(t *testing.T) {
	in, ch := clickhouseInstance(t)
	in.start(ch...)
	p, err := profile.Load("greenhouse")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	acked := map[string]bool{}
	rep, err := fleet.Run(t.Context(), fleet.Config{
		Addr: fmt.Sprintf("127.0.0.1:%d", in.mqtt), Profile: p, Devices: 50, Rate: 500,
		Duration: 10 * time.Second, Seed: 23, QoS: 1,
		OnPublish: func(o fleet.Outcome) {
			if o.Acked {
				mu.Lock()
				acked[fmt.Sprintf("%s,%d", o.Device, o.Point.Seq)] = true
				mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 0 || rep.Failed != 0 || rep.Acked == 0 || int(rep.Acked) != len(acked) {
		t.Fatalf("fleet: %+v", rep.Stats)
	}
	// One row per id: device and seq from the payload, rows per id.
	const q = `SELECT JSONExtractString(payload, 'device') AS d, JSONExtractUInt(payload, 'seq') AS s, count()
		FROM telemetry WHERE topic LIKE 'greenhouse/%/telemetry' GROUP BY d, s ORDER BY d, s`
	var rows map[string]int
	deadline := time.Now().Add(90 * time.Second)
	for {
		rows = map[string]int{}
		out := in.sql(t, ch, q)
		if strings.HasPrefix(out, "error") {
			t.Fatal(out)
		}
		for _, line := range strings.Split(out, "\n") {
			var d string
			var s, n int
			f := strings.Split(strings.ReplaceAll(line, `"`, ""), ",")
			if len(f) != 3 {
				continue
			}
			d = f[0]
			fmt.Sscan(f[1], &s)
			fmt.Sscan(f[2], &n)
			rows[fmt.Sprintf("%s,%d", d, s)] = n
		}
		missing := 0
		for id := range acked {
			if rows[id] == 0 {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged points have no telemetry row", missing, len(acked))
		}
		time.Sleep(500 * time.Millisecond)
	}
	for id, n := range rows {
		if n != 1 {
			t.Errorf("point %s is %d telemetry rows", id, n)
		}
	}
	// Points in flight at an abrupt disconnect may be logged without an
	// acknowledgement, never more.
	if extra := len(rows) - len(acked); extra < 0 || uint64(extra) > rep.Dropped+rep.Unsettled {
		t.Errorf("%d rows for %d acknowledged points (%d dropped, %d unsettled)", len(rows), len(acked), rep.Dropped, rep.Unsettled)
	}
	t.Logf("%d points acknowledged (%.0f/s), each one telemetry row; %d abrupt and %d clean disconnects, %d shadow reports",
		len(acked), rep.AckedPerSec, rep.AbruptDisconnects, rep.CleanDisconnects, rep.ShadowReports)
}

func TestSimulateUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string // in stdout or stderr
	}{
		{[]string{"--help"}, 0, "Usage: iotpipe simulate"},
		{[]string{"--list-profiles"}, 0, "wind "},
		{[]string{"--print-profile", "wind"}, 0, "name: wind"},
		{[]string{"--print-profile", "nosuch"}, 2, "no built-in profile"},
		{[]string{"--rate", "fast"}, 2, "--rate"},
		{[]string{"--rate", "0/s"}, 2, "--rate"},
		{[]string{"--qos", "2"}, 2, "--qos"},
		{[]string{"--profile", "missing.yaml"}, 2, "read profile"},
		{[]string{"--anomaly-kinds", "spike,wobble"}, 2, `unknown kind "wobble"`},
		{[]string{"--anomaly-share", "0.9"}, 2, "between 0 and 0.5"},
		{[]string{"--devices", "0", "--addr", "127.0.0.1:1"}, 1, "devices must be between"},
		{[]string{"--addr", "127.0.0.1:1", "--devices", "1", "--duration", "1s"}, 1, "no device could connect to 127.0.0.1:1"},
		{[]string{"--bogus"}, 2, "bogus"},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
	} {
		var out, errb bytes.Buffer
		code := dispatch(t.Context(), append([]string{"simulate"}, tc.args...), &out, &errb)
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.out) {
			t.Errorf("simulate %v: exit %d, %s%s; want %d with %q", tc.args, code, out.String(), errb.String(), tc.code, tc.out)
		}
	}
	for in, want := range map[string]float64{"500": 500, "500/s": 500, "2.5k/s": 2500, " 10/s ": 10} {
		if got, err := parseRate(in); err != nil || got != want {
			t.Errorf("parseRate(%q) = %v, %v", in, got, err)
		}
	}
}

func TestBenchE2EUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--help"}, 0, "Usage: iotpipe bench e2e"},
		{[]string{"extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--parts", "capacity"}, 2, `unknown part "capacity"`},
		{[]string{"--parts", "latency"}, 2, "needs the rules part"},
		{[]string{"--latency-loads", "half"}, 2, "--latency-loads"},
		{[]string{"--idle-conns", "many"}, 2, "--idle-conns"},
		{[]string{"--binary", "", "--parts", "ingest"}, 2, "binary"},
	} {
		var out, errb bytes.Buffer
		code := dispatch(t.Context(), append([]string{"bench", "e2e"}, tc.args...), &out, &errb)
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.out) {
			t.Errorf("bench e2e %v: exit %d, %s%s; want %d with %q", tc.args, code, out.String(), errb.String(), tc.code, tc.out)
		}
	}
}
