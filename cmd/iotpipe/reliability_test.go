package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/benchmarks/reliability"
	"github.com/iotpipe/iotpipe/schemas"
)

// The reliability suite (issue 21, "The suite"): `iotpipe run` with the
// embedded ClickHouse, two webhook rules and a command rule, under a QoS 1
// load of MQTT 5 devices that put an id in every payload; one fault per
// subtest, then the invariants checked from the log, the processors'
// state and ClickHouse; one table of figures at the end.
//
// The short form runs in `go test` (3 kills, ClickHouse and the webhook
// target out for 10 s); IOTPIPE_RELIABILITY=long runs the long form (20
// kills, 60 s outages). IOTPIPE_RELIABILITY_SEED repeats a run's kill
// moments; IOTPIPE_RELIABILITY_REPORT=FILE writes the table to FILE.

// suiteMode is how long and how hard the suite runs.
type suiteMode struct {
	name    string
	seed    uint64
	kills   int           // kill -9 under load
	outage  time.Duration // ClickHouse down
	hooks   time.Duration // the webhook target down, or hanging
	devices int
	rate    float64 // publishes per second per device
}

func reliabilityMode(t *testing.T) suiteMode {
	m := suiteMode{name: "short", kills: 3, outage: 10 * time.Second, hooks: 6 * time.Second, devices: 10, rate: 20}
	if reliabilityLong() {
		m = suiteMode{name: "long", kills: 20, outage: 60 * time.Second, hooks: 60 * time.Second, devices: 20, rate: 20}
	}
	m.seed = uint64(time.Now().UnixNano())
	if s := os.Getenv("IOTPIPE_RELIABILITY_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("IOTPIPE_RELIABILITY_SEED=%q: %v", s, err)
		}
		m.seed = n
	}
	return m
}

// TestReliability runs every fault of the suite and prints the table.
func TestReliability(t *testing.T) {
	m := reliabilityMode(t)
	t.Logf("reliability suite, %s form, seed %d (IOTPIPE_RELIABILITY_SEED=%d repeats it)", m.name, m.seed, m.seed)
	faults := []struct {
		name string
		run  func(*testing.T, suiteMode) []reliability.Row
	}{
		{"kill", relKills},
		{"clickhouse-down", relClickHouseDown},
		{"webhook-down", relWebhookDown},
		{"webhook-hangs", relWebhookHangs},
		{"disk-full", relDiskFull},
		{"sigterm", relSigterm},
		{"bad-input", relBadInputs},
	}
	// The short form runs two faults at a time (go test's -parallel,
	// GOMAXPROCS by default) to stay near two minutes; the long form one
	// after another, so that its figures are each fault's own.
	rows := make([][]reliability.Row, len(faults))
	start, load := time.Now(), loadAverage()
	t.Run("fault", func(t *testing.T) {
		for i, f := range faults {
			t.Run(f.name, func(t *testing.T) {
				if !reliabilityLong() {
					t.Parallel()
				}
				began := time.Now()
				defer func() {
					if t.Failed() && len(rows[i]) == 0 {
						rows[i] = []reliability.Row{{Fault: f.name, Notes: "FAILED: see the test log"}}
					}
					t.Logf("%s: %s", f.name, time.Since(began).Round(time.Second))
				}()
				rows[i] = f.run(t, m)
			})
		}
	})
	var table reliability.Table
	for _, r := range rows {
		table.Add(r...)
	}
	about := fmt.Sprintf("%s form, seed %d, %s on %d cores (load average before: %s), %s",
		m.name, m.seed, time.Since(start).Round(time.Second), runtime.NumCPU(), load, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	t.Logf("reliability, %s:\n%s", about, table.Markdown())
	if path := os.Getenv("IOTPIPE_RELIABILITY_REPORT"); path != "" {
		if err := table.WriteFile(path, "Reliability", about, "", "Written by `TestReliability` (cmd/iotpipe/reliability_test.go); what each row checks is in the README's Reliability section."); err != nil {
			t.Error(err)
		}
	}
}

// loadAverage is the machine's 1-minute load average, "?" if unknown.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// relRig is `iotpipe run` with the embedded ClickHouse and the suite's
// rules, a webhook target, and the load with its ledger.
type relRig struct {
	t       *testing.T
	in      *instance
	args    []string // flags of every start
	dataDir string   // where iotpipe keeps its data (the log file stays in in.dataDir)
	rx      *hookReceiver
	ledger  *reliability.Ledger
	load    *reliability.Load
	// crashes are when the instance was killed (the moment it was known
	// dead): a webhook or a command delivered just before one may be
	// delivered again.
	crashes []time.Time
}

// The suite's rules: two webhook rules on one target host (two paths),
// a command rule and an event-time window (for the far-future input).
func relRules(rx *hookReceiver) string {
	return `CREATE RULE relhook AS SELECT dev, seq FROM 'rel/+' WHERE seq % 2 = 0
THEN webhook(url => '` + rx.url("/hook") + `', timeout => 3);
CREATE RULE relhook2 AS SELECT dev, seq FROM 'rel/+' WHERE seq % 2 = 0
THEN webhook(url => '` + rx.url("/other") + `', timeout => 3);
CREATE RULE relcmd AS SELECT dev, seq FROM 'rel/+' WHERE seq % 10 = 0
THEN command(thing => '${dev}', topic => 'relcmd/${dev}', payload => '{"seq": ${seq}}');
CREATE RULE relwin AS SELECT clientid() AS device, count(*) AS n FROM 'relts/+'
GROUP BY TUMBLE(INTERVAL 10 SECONDS), clientid() EVENT TIME ts;
`
}

// hookRules are the webhook rules of relRules.
var hookRules = []string{"relhook", "relhook2"}

// newRelRig starts the instance; dataDir, when set, holds its data
// instead of the test's temporary directory; extra flags are added.
func newRelRig(t *testing.T, m suiteMode, dataDir string, extra ...string) *relRig {
	in, ch := clickhouseInstance(t)
	r := &relRig{t: t, in: in, dataDir: in.dataDir, rx: newHookReceiver(t, "", 200), ledger: reliability.NewLedger()}
	r.args = append(ch, extra...)
	if dataDir != "" {
		r.dataDir = dataDir
		r.args = append(r.args, "--data-dir", dataDir)
		// The instance reads the log with the credentials in its own
		// data dir: link them to where this one's log writes them.
		creds := in.kafkaCredentials()
		if err := os.MkdirAll(filepath.Dir(creds), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(dataDir, "kafka", filepath.Base(creds)), creds); err != nil {
			t.Fatal(err)
		}
	}
	writeRule(t, in, "reliability.sql", relRules(r.rx))
	in.start(r.args...)
	r.load = reliability.StartLoad(reliability.LoadOptions{
		Addr: fmt.Sprintf("127.0.0.1:%d", in.mqtt), Devices: m.devices, Rate: m.rate,
		Prefix: "rel", ShadowEvery: 5, Commands: "relcmd/{id}",
	}, r.ledger)
	t.Cleanup(r.load.Stop)
	return r
}

// restart starts the instance again after it stopped.
func (r *relRig) restart() { r.in.start(r.args...) }

// kill kills the instance with SIGKILL and notes when it was dead.
func (r *relRig) kill() {
	r.in.kill()
	r.crashes = append(r.crashes, time.Now())
}

// alive reports whether the instance answers /healthz.
func (r *relRig) alive() bool {
	resp, err := http.Get(r.in.url("/healthz"))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// sql runs a query with `iotpipe sql` against the instance's embedded
// ClickHouse and returns its CSV rows.
func (r *relRig) sql(query string) string {
	var out, errb bytes.Buffer
	if code := dispatch(r.t.Context(), []string{"sql", "--data-dir", r.dataDir, "--format", "csv", query}, &out, &errb); code != 0 {
		return "error: " + errb.String()
	}
	_, rows, _ := strings.Cut(strings.TrimSpace(out.String()), "\n")
	return rows
}

// awaitRows waits until the telemetry table holds each of the log's
// publishes (partition, offset) once and returns when it did.
func (r *relRig) awaitRows(log logged, timeout time.Duration) (time.Time, string) {
	publishes := log.publishes
	want := fmt.Sprintf("%d,%d", publishes, publishes)
	var got string
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		if got = r.sql("SELECT count(), uniqExact(partition, offset) FROM telemetry"); got == want {
			return time.Now(), fmt.Sprintf("%s = %s", reliability.Thousands(publishes), reliability.Thousands(publishes))
		}
		if time.Now().After(deadline) {
			r.t.Errorf("telemetry (count, uniqExact(partition, offset)) %q after %s, want %s (the log's publishes)", got, timeout, want)
			r.diffRows(log)
			c, _, _ := strings.Cut(got, ",")
			return time.Time{}, fmt.Sprintf("%s ≠ %s", c, reliability.Thousands(publishes))
		}
	}
}

// diffRows says which things have other telemetry rows than the log's
// publishes.
func (r *relRig) diffRows(log logged) {
	rows := map[string]int{}
	for _, line := range strings.Split(r.sql("SELECT thing, count() FROM telemetry GROUP BY thing"), "\n") {
		i := strings.LastIndexByte(line, ',')
		if i < 0 {
			continue
		}
		n, _ := strconv.Atoi(line[i+1:])
		rows[strings.Trim(line[:i], `"`)] = n
	}
	shown := false
	for thing, n := range log.perThing {
		if rows[thing] == n {
			continue
		}
		r.t.Errorf("thing %q: %d telemetry rows, %d publishes in the log", thing, rows[thing], n)
		if shown {
			continue
		}
		shown = true
		for _, line := range strings.Split(r.sql("SELECT partition, offset, topic, payload FROM telemetry WHERE thing = '"+thing+"' ORDER BY partition, offset"), "\n") {
			f := strings.SplitN(line, ",", 3)
			if len(f) == 3 && !log.at[f[0]+"/"+f[1]] {
				r.t.Errorf("a telemetry row of %s is no publish of the log: %s", thing, line)
			}
		}
	}
	for thing, n := range rows {
		if _, ok := log.perThing[thing]; !ok {
			r.t.Errorf("thing %q: %d telemetry rows, no publish in the log", thing, n)
		}
	}
}

// logged is what the log holds, as the checks need it.
type logged struct {
	publishes int             // publish events, every client
	perThing  map[string]int  // publish events per record key
	updates   map[string]int  // shadow updates per load device
	loadIDs   []string        // the load's publishes, by id
	at        map[string]bool // "<partition>/<offset>" of every publish
}

// readLog reads the events topic once it stopped growing (a publish in
// flight when its client went away is logged a moment later).
func (r *relRig) readLog() logged {
	recs := r.in.readEvents()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		again := r.in.readEvents()
		if len(again) == len(recs) {
			break
		}
		recs = again
	}
	l := logged{perThing: map[string]int{}, updates: map[string]int{}, at: map[string]bool{}}
	for _, rec := range recs {
		env, err := schemas.DecodeEnvelope(rec.Headers)
		if err != nil {
			r.t.Fatalf("event %d/%d: %v", rec.Partition, rec.Offset, err)
		}
		if env.Type != schemas.EventPublish {
			continue
		}
		l.publishes++
		l.perThing[string(rec.Key)]++
		l.at[fmt.Sprintf("%d/%d", rec.Partition, rec.Offset)] = true
		if !strings.HasPrefix(env.ClientID, "rel-") {
			continue
		}
		if id, ok := reliability.PublishID(rec.Value); ok {
			l.loadIDs = append(l.loadIDs, id)
		}
		if strings.HasSuffix(env.Topic, "/shadow/update") {
			l.updates[string(rec.Key)]++
		}
	}
	return l
}

// hookFirings are the firings of the webhook rules for the events in
// the log (the rules fire for even seq).
func (r *relRig) hookFirings() map[string]loggedPublish {
	out := map[string]loggedPublish{}
	for _, rule := range hookRules {
		for k, p := range r.in.firings("rel/", rule) {
			if id, ok := reliability.PublishID(p.payload); ok {
				if seq, _ := strconv.Atoi(id[strings.LastIndexByte(id, '/')+1:]); seq%2 == 0 {
					out[k] = p
				}
			}
		}
	}
	return out
}

// awaitHooks waits until every firing of the webhook rules was
// delivered and returns when that was.
func (r *relRig) awaitHooks(timeout time.Duration) time.Time {
	want := r.hookFirings()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		got := r.rx.delivered()
		missing := 0
		for k := range want {
			if got[k] == 0 {
				missing++
			}
		}
		if missing == 0 {
			return time.Now()
		}
	}
	return time.Time{} // verify says what is missing
}

// afterCrash reports whether at falls within window before one of the
// instance's crashes: what was delivered then may be delivered again.
func (r *relRig) afterCrash(at time.Time, window time.Duration) bool {
	for _, c := range r.crashes {
		if !at.After(c) && c.Sub(at) <= window {
			return true
		}
	}
	return false
}

// beforeCrash is how long before the next crash at was (0 if none
// followed).
func (r *relRig) beforeCrash(at time.Time) time.Duration {
	for _, c := range r.crashes {
		if !at.After(c) {
			return c.Sub(at)
		}
	}
	return 0
}

// repeatWindow is how long before a crash a delivered webhook or command
// may be delivered again: the webhook executor records what it delivered
// every 100 ms, and ingest commits what it routed after each poll; the
// rest is the time these records take to land under this machine's load.
const repeatWindow = time.Second

// verdict is what verify found, for a Row.
type verdict struct {
	check                     reliability.Check
	publishes                 int
	rows                      string
	hooks, hookRepeats        int
	commands, cmdReached, cmd int // command actions, reached a device, repeated
	// hookBefore and cmdBefore are the longest a repeated webhook or
	// command was first delivered before the crash that followed.
	hookBefore, cmdBefore time.Duration
	dlq                   []string
}

// verify stops nothing: call it once the load stopped. It checks every
// invariant of the suite and fails the test for each that does not
// hold; allowDLQ says which DLQ reasons are expected (by substring).
func (r *relRig) verify(allowDLQ ...string) verdict {
	t := r.t
	t.Helper()
	// Shadow versions are gapless: each device's version is its number
	// of updates in the log (every one is valid). Checked first: each
	// GET of a shadow is a request in the log.
	deadline := time.Now().Add(90 * time.Second)
	for thing, n := range r.readLog().updates {
		for {
			got := shadowVersion(t, r.in.url(""), thing)
			if got == int64(n) {
				break
			}
			if got > int64(n) || time.Now().After(deadline) {
				t.Errorf("shadow of %s: version %d, the log has %d updates", thing, got, n)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	log := r.readLog()
	v := verdict{publishes: log.publishes, check: r.ledger.Check(log.loadIDs)}
	for _, p := range v.check.Problems(10) {
		t.Error(p)
	}
	if v.check.Acked == 0 {
		t.Error("the load had no publish acknowledged")
	}
	// Last-seen counts equal the log, for every thing that published.
	for thing, n := range log.perThing {
		for {
			m, code := r.in.thing(url.PathEscape(thing))
			got, _ := m["messages"].(float64)
			if code == 200 && int(got) == n {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("last-seen of %q: %v messages (HTTP %d), the log has %d publishes", thing, m["messages"], code, n)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	_, v.rows = r.awaitRows(log, 3*time.Minute)
	// Every webhook firing delivered; a key delivered twice only if it
	// was first delivered just before a crash.
	want := r.hookFirings()
	r.rx.awaitAll(want, 3*time.Minute)
	v.hooks = len(want)
	r.rx.mu.Lock()
	for k, n := range r.rx.ok {
		if n < 2 {
			continue
		}
		v.hookRepeats++
		v.hookBefore = max(v.hookBefore, r.beforeCrash(r.rx.first[k]))
		if !r.afterCrash(r.rx.first[k], repeatWindow) {
			t.Errorf("webhook key %s delivered %d times, first at %s, not just before a crash (%v)", k, n, r.rx.first[k].Format(time.StampMilli), r.crashes)
		}
	}
	r.rx.mu.Unlock()
	r.checkCommands(&v)
	r.checkDerived()
	v.dlq = r.checkDLQ(allowDLQ)
	return v
}

// checkCommands: every command action has one outbound record; a device
// got each command at most once, or twice only when it was routed just
// before a crash.
func (r *relRig) checkCommands(v *verdict) {
	t := r.t
	keys := map[string]bool{}
	for _, rec := range r.in.readTopic(schemas.DefaultTopics().Actions) {
		if strings.HasSuffix(string(rec.Key), "/relcmd/0") {
			keys[string(rec.Key)] = true
		}
	}
	out := map[string]int{}
	for _, rec := range r.in.readTopic(schemas.DefaultTopics().Outbound) {
		if k := recHeader(rec, schemas.HeaderCommand); k != "" {
			out[k]++
		}
	}
	for k := range keys {
		if out[k] != 1 {
			t.Errorf("command %s: %d outbound records, want 1", k, out[k])
		}
	}
	for k := range out {
		if !keys[k] {
			t.Errorf("outbound command %s has no command action", k)
		}
	}
	v.commands = len(keys)
	for id, got := range r.load.Commands() {
		if !keys[id] {
			t.Errorf("a device got %q, which is no command of the log", id)
			continue
		}
		v.cmdReached++
		if got.Times > 1 {
			v.cmd++
			v.cmdBefore = max(v.cmdBefore, r.beforeCrash(got.First))
			if !r.afterCrash(got.First, repeatWindow) {
				t.Errorf("command %s reached its device %d times, first at %s, not just before a crash (%v)", id, got.Times, got.First.Format(time.StampMilli), r.crashes)
			}
		}
	}
}

// checkDerived: no derived record of the processors or the executors is
// in its topic twice (by iot.src, or iot.action for what executors make).
func (r *relRig) checkDerived() {
	for _, topic := range []string{schemas.DefaultTopics().Actions, schemas.DefaultTopics().Shadows, schemas.DefaultTopics().Outbound} {
		seen := map[string][]string{}
		for _, rec := range r.in.readTopic(topic) {
			id := recHeader(rec, schemas.HeaderSource)
			if id == "" {
				id = "action " + recHeader(rec, "iot.action")
			}
			seen[id] = append(seen[id], fmt.Sprintf("%d/%d (producer %d epoch %d, %s)", rec.Partition, rec.Offset,
				rec.ProducerID, rec.ProducerEpoch, rec.Timestamp.Format(time.StampMilli)))
		}
		for id, at := range seen {
			if len(at) > 1 {
				r.t.Errorf("%s: %d records with id %s, at %v (crashes %v)", topic, len(at), id, at, r.crashes)
			}
		}
	}
}

// checkDLQ: every dead letter has a reason, and only allowed reasons are
// there; it returns "stage: reason" of each.
func (r *relRig) checkDLQ(allowed []string) []string {
	var out []string
	for _, rec := range r.in.readTopic(schemas.DefaultTopics().DLQ) {
		stage, reason := recHeader(rec, "dlq.stage"), recHeader(rec, "dlq.reason")
		out = append(out, stage+": "+reason)
		expected := false
		for _, a := range allowed {
			expected = expected || (reason != "" && strings.Contains(reason, a))
		}
		if !expected {
			r.t.Errorf("dead letter %s/%d stage %q reason %q, not expected", rec.Key, rec.Offset, stage, reason)
		}
	}
	return out
}

// row makes the table row of a fault from what verify found.
func (r *relRig) row(fault string, v verdict, recovery time.Duration, notes ...string) reliability.Row {
	hooks := fmt.Sprintf("webhooks %s, %d repeated", reliability.Thousands(v.hooks), v.hookRepeats)
	if v.hookRepeats > 0 {
		hooks += fmt.Sprintf(" (each first delivered at most %.1f s before a kill)", v.hookBefore.Seconds())
	}
	cmds := fmt.Sprintf("commands %s (%s reached a device), %d repeated", reliability.Thousands(v.commands), reliability.Thousands(v.cmdReached), v.cmd)
	if v.cmd > 0 {
		cmds += fmt.Sprintf(" (each first delivered at most %.1f s before a kill)", v.cmdBefore.Seconds())
	}
	notes = append(notes, hooks, cmds)
	if len(v.dlq) > 0 {
		notes = append(notes, fmt.Sprintf("DLQ %d", len(v.dlq)))
	}
	if v.check.Unacked > 0 {
		notes = append(notes, fmt.Sprintf("%d logged but never acknowledged", v.check.Unacked))
	}
	return reliability.Row{Fault: fault, Load: r.load.Describe(), Acknowledged: v.check.Acked, Lost: len(v.check.Lost),
		Duplicated: len(v.check.Duplicated), Rows: v.rows, Recovery: recovery, Notes: strings.Join(notes, "; ")}
}

// refusedCodes says the load's refusals, e.g. "0x97 ×120".
func refusedCodes(m map[byte]int) string {
	var parts []string
	for c, n := range m {
		parts = append(parts, fmt.Sprintf("0x%02x ×%d", c, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// clickhouseChild is the command-line pattern of the rig's ClickHouse
// child process.
func (r *relRig) clickhouseChild() string {
	return "--path=" + filepath.Join(r.dataDir, "clickhouse")
}
