package main

import (
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/benchmarks/reliability"
	"github.com/iotpipe/iotpipe/internal/tmpfstest"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The faults of the reliability suite (reliability_test.go), one
// function per row of its table.

// relKills: kill -9 of `iotpipe run` at seeded random moments under
// load, each time started again at once. Time to recover: the longest
// from a kill to the next acknowledged publish.
func relKills(t *testing.T, m suiteMode) []reliability.Row {
	r := newRelRig(t, m, "")
	var worst time.Duration
	var each []string
	for _, wait := range reliability.Moments(m.seed, m.kills, time.Second, 5*time.Second) {
		time.Sleep(wait)
		at := time.Now()
		r.kill()
		dead := r.crashes[len(r.crashes)-1] // a PUBACK read before was sent before the kill
		r.restart()
		first, ok := r.ledger.AwaitAckAfter(dead, time.Minute)
		if !ok {
			t.Fatalf("no publish acknowledged within a minute of kill %d", len(r.crashes))
		}
		worst = max(worst, first.Sub(at))
		each = append(each, fmt.Sprintf("%.1f", first.Sub(at).Seconds()))
	}
	time.Sleep(time.Second)
	r.load.Stop()
	v := r.verify()
	t.Logf("%d kills, recovered after %s s; %d connections", m.kills, strings.Join(each, ", "), r.load.Connects())
	return []reliability.Row{r.row(fmt.Sprintf("kill -9 ×%d at random moments (seeded)", m.kills), v, worst,
		fmt.Sprintf("%d reconnects", r.load.Connects()-int64(m.devices)))}
}

// relClickHouseDown: the embedded ClickHouse child killed with kill -9
// whenever it is back (the supervisor restarts it), for the outage;
// ingest must not notice. Time to recover: from the outage's end to
// every publish of the log being a telemetry row.
func relClickHouseDown(t *testing.T, m suiteMode) []reliability.Row {
	r := newRelRig(t, m, "")
	time.Sleep(3 * time.Second)
	before := r.ledger.Stats().Acked
	start := time.Now()
	kills := 0
	for time.Since(start) < m.outage {
		n, err := reliability.KillMatching(r.clickhouseChild())
		if err != nil {
			t.Fatal(err)
		}
		kills += n
		time.Sleep(300 * time.Millisecond)
	}
	end := time.Now()
	r.load.Stop()
	if kills == 0 {
		t.Fatal("never found the ClickHouse child to kill")
	}
	during := r.ledger.AckedBetween(start, end)
	st := r.ledger.Stats()
	if len(st.Refused) > 0 {
		t.Errorf("publishes refused while ClickHouse was down: %s", refusedCodes(st.Refused))
	}
	log := r.readLog()
	back, _ := r.awaitRows(log, 3*time.Minute)
	v := r.verify()
	rateBefore := float64(before) / 3
	rateDuring := float64(during) / end.Sub(start).Seconds()
	return []reliability.Row{r.row(fmt.Sprintf("ClickHouse child killed, kept down %s", m.outage), v, sinceIf(back, end),
		fmt.Sprintf("killed %d times; ingest %.0f acked/s before, %.0f during", kills, rateBefore, rateDuring))}
}

// sinceIf is at - from, or 0 when at is zero (it never happened).
func sinceIf(at, from time.Time) time.Duration {
	if at.IsZero() {
		return 0
	}
	return at.Sub(from)
}

// relWebhookDown: the webhook target answers 503 for half the outage,
// then its port is closed for the other half; then it is back. Time to
// recover: from its return to every firing delivered.
func relWebhookDown(t *testing.T, m suiteMode) []reliability.Row {
	r := newRelRig(t, m, "")
	time.Sleep(2 * time.Second)
	r.rx.status.Store(503)
	time.Sleep(m.hooks / 2)
	r.rx.down()
	time.Sleep(m.hooks / 2)
	r.rx.status.Store(200)
	r.rx.up()
	up := time.Now()
	r.load.Stop()
	if st := r.ledger.Stats(); len(st.Refused) > 0 {
		t.Errorf("publishes refused while the webhook target was down: %s", refusedCodes(st.Refused))
	}
	done := r.awaitHooks(3 * time.Minute)
	v := r.verify()
	return []reliability.Row{r.row(fmt.Sprintf("webhook target down %s (503, then port closed)", m.hooks), v, sinceIf(done, up))}
}

// relWebhookHangs: one path of the webhook target holds every request
// (the rule's timeout is 3 s) for the outage while the other rule's
// path on the same host answers. Time to recover: from the release to
// every firing delivered.
func relWebhookHangs(t *testing.T, m suiteMode) []reliability.Row {
	r := newRelRig(t, m, "")
	time.Sleep(2 * time.Second)
	count := func(rule string) int {
		n := 0
		for k := range r.rx.delivered() {
			if strings.HasSuffix(k, "/"+rule+"/0") {
				n++
			}
		}
		return n
	}
	hang := &hookHang{path: "/hook", release: make(chan struct{})}
	r.rx.hang.Store(hang)
	other0 := count("relhook2")
	time.Sleep(m.hooks)
	other1 := count("relhook2")
	r.rx.hang.Store(nil)
	close(hang.release)
	released := time.Now()
	r.load.Stop()
	if other1-other0 < 10 {
		t.Errorf("the other rule on the hanging target's host got %d firings through during the hang", other1-other0)
	}
	done := r.awaitHooks(3 * time.Minute)
	v := r.verify()
	return []reliability.Row{r.row(fmt.Sprintf("webhook target hangs %s (timeout 3 s)", m.hooks), v, sinceIf(done, released),
		fmt.Sprintf("the other rule on its host: %d delivered during the hang", other1-other0))}
}

// relDiskFull: the data dir on a 128 MiB tmpfs; a ballast leaves 20 MiB
// and a device publishing 64 KiB payloads fills it past the log's 16 MiB
// guard, until publishes are refused with 0x97 (quota exceeded); the
// load keeps going for 3 s; the ballast is removed. Time to recover:
// from freeing the space to the next acknowledged publish.
func relDiskFull(t *testing.T, m suiteMode) []reliability.Row {
	dir := tmpfstest.Mount(t, 128) // unmounted last: registered before the rig
	r := newRelRig(t, m, dir)
	time.Sleep(2 * time.Second)
	ballast, err := reliability.Fill(dir, 20<<20)
	if err != nil {
		t.Fatal(err)
	}
	filled := fillUntilRefused(t, r)
	for deadline := time.Now().Add(time.Minute); r.ledger.Stats().Refused[0x97] == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the load got no 0x97 on a full disk: refused %s, disconnects %v", refusedCodes(r.ledger.Stats().Refused), r.load.Disconnects())
		}
	}
	time.Sleep(3 * time.Second)
	if !r.alive() {
		t.Fatalf("iotpipe is gone with its disk full:\n%s", tail(r.in.logText(), 20))
	}
	if err := ballast.Remove(); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	first, ok := r.ledger.AwaitAckAfter(freed, time.Minute)
	if !ok {
		t.Fatal("no publish acknowledged within a minute of freeing the space")
	}
	time.Sleep(2 * time.Second)
	r.load.Stop()
	refused := r.ledger.Stats().Refused
	for c := range refused {
		if c != 0x97 {
			t.Errorf("publishes refused with 0x%02x on a full disk, want 0x97 only", c)
		}
	}
	if n := metricValue(t, r.in, `iotpipe_ingest_refused_total{reason="disk_full"}`); n < float64(refused[0x97]) {
		t.Errorf("iotpipe_ingest_refused_total{reason=disk_full} %v, the load alone got %d refusals", n, refused[0x97])
	}
	caughtUp, _ := r.awaitRows(r.readLog(), 3*time.Minute)
	v := r.verify()
	return []reliability.Row{r.row("data dir's disk full (128 MiB tmpfs), then space freed", v, first.Sub(freed),
		fmt.Sprintf("refused %s; the filler logged %d × 64 KiB first; ClickHouse caught up %.1f s after the space was freed", refusedCodes(refused), filled, sinceIf(caughtUp, freed).Seconds()))}
}

// fillUntilRefused publishes 64 KiB of random bytes as device "filler"
// until a publish is refused with 0x97 and returns how many were
// acknowledged before.
func fillUntilRefused(t *testing.T, r *relRig) int {
	t.Helper()
	c, code, err := reliability.Dial(fmt.Sprintf("127.0.0.1:%d", r.in.mqtt), reliability.ConnectOptions{ClientID: "filler"})
	if err != nil || code != 0 {
		t.Fatalf("filler connect: 0x%02x %v", code, err)
	}
	defer c.Close()
	payload := make([]byte, 64<<10)
	for i := 1; i < 5000; i++ {
		rand.Read(payload)
		if err := c.Publish("filler/data", 1, uint16(i), payload); err != nil {
			t.Fatalf("filler publish %d: %v", i, err)
		}
		a, err := c.Await(30*time.Second, packets.Puback, packets.Disconnect)
		if err != nil {
			t.Fatalf("filler publish %d: %v", i, err)
		}
		switch {
		case a.Type == packets.Puback && a.Code == 0:
		case a.Type == packets.Puback && a.Code == 0x97:
			return i - 1
		default:
			t.Fatalf("filler publish %d: %s, want PUBACK 0x00 or 0x97", i, a)
		}
	}
	t.Fatal("the disk never filled")
	return 0
}

// relSigterm: SIGTERM under load; iotpipe must exit 0 within its drain
// deadline (30 s), and start again. Time to recover: from SIGTERM to the
// next acknowledged publish after the restart.
func relSigterm(t *testing.T, m suiteMode) []reliability.Row {
	const drain = 30 * time.Second
	r := newRelRig(t, m, "", "--drain-timeout", drain.String())
	time.Sleep(3 * time.Second)
	at := time.Now()
	code, took := r.in.terminate(drain + 30*time.Second)
	if code != 0 {
		t.Errorf("exit status %d after SIGTERM under load, want 0", code)
	}
	if took > drain {
		t.Errorf("SIGTERM took %s, past the %s drain deadline", took, drain)
	}
	exited := time.Now()
	r.restart()
	first, ok := r.ledger.AwaitAckAfter(exited, time.Minute)
	if !ok {
		t.Fatal("no publish acknowledged within a minute after the restart")
	}
	time.Sleep(2 * time.Second)
	r.load.Stop()
	v := r.verify()
	return []reliability.Row{r.row("SIGTERM under load, then start again", v, first.Sub(at),
		fmt.Sprintf("exited 0 after %.1f s (drain deadline %s)", took.Seconds(), drain))}
}
