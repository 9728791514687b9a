package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
)

// The browser test's tools, found the way the Makefile installs them:
// Debian's chromium, and playwright-core (the version pinned in
// web/e2e/package-lock.json) under a cache folder.
const (
	e2eDir         = "../../web/e2e"
	chromiumPath   = "/usr/bin/chromium"
	installHowto   = "install them with:\n  apt-get install -y chromium\n  mkdir -p ~/.cache/iotpipe/e2e && cp web/e2e/package.json web/e2e/package-lock.json ~/.cache/iotpipe/e2e/ && npm ci --prefix ~/.cache/iotpipe/e2e --no-audit --no-fund --ignore-scripts\n(IOTPIPE_E2E_CACHE and IOTPIPE_CHROMIUM name other places)"
	dashboardThing = 10_000
)

// browserTools returns the chromium binary and the playwright-core
// package directory, failing the test with what to install when one is
// missing or not the pinned version.
func browserTools(t *testing.T) (chromium, playwright string) {
	t.Helper()
	chromium = cmp.Or(os.Getenv("IOTPIPE_CHROMIUM"), chromiumPath)
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("the dashboard's browser test needs chromium at %s: %v; %s", chromium, err, installHowto)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("the dashboard's browser test needs node (Node.js 20): %v", err)
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	b, err := os.ReadFile(filepath.Join(e2eDir, "package-lock.json"))
	if err == nil {
		err = json.Unmarshal(b, &lock)
	}
	if err != nil {
		t.Fatalf("read web/e2e/package-lock.json: %v", err)
	}
	want := lock.Packages["node_modules/playwright-core"].Version
	cache := os.Getenv("IOTPIPE_E2E_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "iotpipe", "e2e")
	}
	playwright = filepath.Join(cache, "node_modules", "playwright-core")
	var pkg struct {
		Version string `json:"version"`
	}
	b, err = os.ReadFile(filepath.Join(playwright, "package.json"))
	if err == nil {
		err = json.Unmarshal(b, &pkg)
	}
	if err != nil || pkg.Version != want {
		t.Fatalf("the dashboard's browser test needs playwright-core %s in %s (found %q, %v); %s", want, playwright, pkg.Version, err, installHowto)
	}
	return chromium, playwright
}

// browser is web/e2e/driver.mjs: one JSON command a line in, one
// answer a line out.
type browser struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startBrowser(t *testing.T, base, outDir string) *browser {
	t.Helper()
	chromium, playwright := browserTools(t)
	cmd := exec.Command("node", "driver.mjs")
	cmd.Dir = e2eDir
	cmd.Env = append(os.Environ(), "PLAYWRIGHT_CORE="+playwright, "CHROMIUM="+chromium, "BASE="+base, "TOKEN="+testAPIToken, "OUT="+outDir)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, cmd: cmd, in: in, out: bufio.NewScanner(out)}
	b.out.Buffer(make([]byte, 1<<20), 16<<20)
	t.Cleanup(func() {
		in.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	if r := b.read(); r["ready"] != true {
		t.Fatalf("browser driver did not start: %v", r)
	}
	return b
}

func (b *browser) read() map[string]any {
	b.t.Helper()
	if !b.out.Scan() {
		b.t.Fatalf("browser driver ended: %v", b.out.Err())
	}
	var r map[string]any
	if err := json.Unmarshal(b.out.Bytes(), &r); err != nil {
		b.t.Fatalf("browser driver said %q: %v", b.out.Text(), err)
	}
	return r
}

// do runs one driver command and returns its answer; a failed command
// fails the test.
func (b *browser) do(op string, args map[string]any) map[string]any {
	b.t.Helper()
	r, err := b.try(op, args)
	if err != nil {
		b.t.Fatal(err)
	}
	return r
}

func (b *browser) try(op string, args map[string]any) (map[string]any, error) {
	b.t.Helper()
	cmd := map[string]any{"op": op}
	for k, v := range args {
		cmd[k] = v
	}
	line, _ := json.Marshal(cmd)
	if _, err := b.in.Write(append(line, '\n')); err != nil {
		b.t.Fatalf("browser driver: %v", err)
	}
	r := b.read()
	if r["ok"] != true {
		return r, fmt.Errorf("browser %s %v: %v", op, args, r["error"])
	}
	return r, nil
}

// TestDashboard drives the dashboard in headless chromium against
// iotpipe run with the embedded ClickHouse: devices appear on the fleet
// page and go offline, the desired-state editor's change reaches a
// subscribed device as a delta, the thing page draws the temperature
// chart with the PEWMA band and an anomaly marker for a spike, the SQL
// console returns rows and shows the server's refusal of a write, and
// the fleet page with 10,000 things is timed in the browser (reported,
// not asserted). Screenshots go to web/e2e/output/TestDashboard.
func TestDashboard(t *testing.T) {
	outDir, err := filepath.Abs(filepath.Join(e2eDir, "output", t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(outDir)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		t.Fatal(err)
	}
	browserTools(t) // missing tools fail before iotpipe starts
	in, ch := clickhouseInstance(t)
	writeRule(t, in, "temperature.sql", `CREATE RULE temp_pewma AS SELECT temperature, pewma(temperature) AS a FROM 'sensors/+'
THEN clickhouse(table => 'rule_outputs');`)
	in.start(ch...)
	b := startBrowser(t, in.url(""), outDir)
	shot := func(name string) { t.Logf("screenshot %s", b.do("screenshot", map[string]any{"name": name})["path"]) }

	r := b.do("login", nil)
	if r["token"] != "set" {
		t.Fatalf("the token is not in sessionStorage: %v", r)
	}

	// A device's first message: its row appears.
	sent := time.Now()
	mosquittoPub(t, in, "dev-pub", "sensors/dev-pub", `{"temperature":21}`)
	r = b.do("waitRow", map[string]any{"thing": "dev-pub", "timeout": 30000})
	t.Logf("dev-pub on the fleet page %d ms after its first publish was acknowledged", int64(r["at"].(float64))-sent.UnixMilli())

	// A subscribed device: connected, gets the delta of the page's
	// desired state, disconnects (-C 1), then offline.
	sub := exec.Command("mosquitto_sub", "-h", "127.0.0.1", "-p", strconv.Itoa(in.mqtt), "-q", "1", "-i", "dev-sub",
		"-t", "$aws/things/dev-sub/shadow/update/delta", "-C", "1", "-W", "120")
	var subOut bytes.Buffer
	sub.Stdout, sub.Stderr = &subOut, &subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	subDone := make(chan error, 1)
	go func() { subDone <- sub.Wait() }()
	t.Cleanup(func() { sub.Process.Kill() })
	b.do("waitRow", map[string]any{"thing": "dev-sub", "connected": true})
	shot("fleet.png")
	b.do("goto", map[string]any{"hash": "#/thing/dev-sub", "wait": "#desired-editor"})
	r = b.do("editDesired", map[string]any{"desired": `{"color":"red"}`})
	if !strings.Contains(r["result"].(string), "accepted") {
		t.Fatalf("desired editor: %v", r["result"])
	}
	select {
	case err := <-subDone:
		if err != nil || !strings.Contains(subOut.String(), `"color":"red"`) {
			t.Fatalf("device's delta: %v %s", err, subOut.String())
		}
		t.Logf("dev-sub got the delta: %s", strings.TrimSpace(subOut.String()))
	case <-time.After(60 * time.Second):
		t.Fatalf("no delta at the subscribed device: %s", subOut.String())
	}
	b.do("waitText", map[string]any{"selector": `[data-shadow=""] .desired`, "text": "red"})
	shot("thing-desired.png")
	b.do("goto", map[string]any{"hash": "#/fleet", "wait": "#fleet-rows tr"})
	b.do("waitRow", map[string]any{"thing": "dev-sub", "connected": false})

	// Telemetry with a spike: the chart's band and anomaly marker.
	var lines strings.Builder
	for i := range 40 {
		v := 20 + i%5
		if i == 34 {
			v = 90
		}
		fmt.Fprintf(&lines, "{\"temperature\":%d}\n", v)
	}
	pub := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", strconv.Itoa(in.mqtt), "-q", "1", "-i", "dev-pub", "-t", "sensors/dev-pub", "-l")
	pub.Stdin = strings.NewReader(lines.String())
	if out, err := pub.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	b.do("goto", map[string]any{"hash": "#/thing/dev-pub", "wait": "#thing-info"})
	r = b.do("waitChart", map[string]any{"field": "temperature", "timeout": 90000})
	t.Logf("temperature chart: %v points, %v band points, %v anomalies", r["points"], r["band"], r["anomalies"])
	shot("thing-chart.png")

	// The SQL console: rows, and the server's refusal of a write.
	b.do("goto", map[string]any{"hash": "#/sql", "wait": "#sql-text"})
	deadline := time.Now().Add(60 * time.Second)
	for {
		r = b.do("sql", map[string]any{"query": "SELECT thing, count() FROM telemetry GROUP BY thing ORDER BY thing"})
		// 41 publishes, and the page's shadow reads (GET
		// /things/{thing}/shadow goes through the log as a publish on
		// $aws/things/dev-pub/shadow/get).
		if n, _ := strconv.Atoi(rowCount(r, "dev-pub")); n >= 41 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SQL console: no row dev-pub with 41 or more: %v", r)
		}
	}
	shot("sql.png")
	write := "INSERT INTO telemetry (thing) VALUES ('intruder')"
	r = b.do("sql", map[string]any{"query": write})
	want := sqlRefusal(t, in, write)
	if r["error"] != true || !strings.Contains(r["message"].(string), want) {
		t.Fatalf("SQL console on a write: %v, want the server's message %q", r, want)
	}
	t.Logf("SQL console on a write: %s", r["message"])

	b.do("goto", map[string]any{"hash": "#/rules", "wait": `[data-rule="temp_pewma"]`})
	b.do("waitText", map[string]any{"selector": ".rule-text", "text": "pewma(temperature)"})
	shot("rules.png")
	b.do("goto", map[string]any{"hash": "#/health", "wait": "#health-ready"})
	b.do("waitText", map[string]any{"selector": "#health-ready", "text": "ready"})
	shot("health.png")

	t.Run("10k", func(t *testing.T) { fleetAtScale(t, in, b) })
	shot("fleet-10k.png")
	r = b.do("errors", nil)
	if errs, _ := r["pageErrors"].([]any); len(errs) > 0 {
		t.Errorf("the page threw: %v", errs)
	}
}

// fleetAtScale connects 10,000 simulated devices sending 50 points a
// second in all, then times the fleet page in the browser: its first
// render, and its frames and a search while the live updates arrive.
func fleetAtScale(t *testing.T, in *instance, b *browser) {
	sim := exec.Command(iotpipeBin, "simulate", "--addr", fmt.Sprintf("127.0.0.1:%d", in.mqtt), "--devices", strconv.Itoa(dashboardThing),
		"--rate", "50/s", "--duration", "90s", "--no-shadows", "--no-disconnects", "--quiet")
	var simOut bytes.Buffer
	sim.Stdout, sim.Stderr = &simOut, &simOut
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sim.Process.Kill(); sim.Wait() }()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var page struct {
			Total int `json:"total"`
		}
		resp, err := http.Get(in.url("/api/dashboard/fleet?limit=1"))
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
		}
		if page.Total >= dashboardThing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d things after 3 min of simulate: %v %s", page.Total, err, simOut.String())
		}
		time.Sleep(time.Second)
	}
	r := b.do("fleetRender", nil)
	t.Logf("fleet page with %v things: first page of %v rows drawn %.0f ms after navigation (list answer and render %.0f ms; DOMContentLoaded %.0f ms)",
		r["total"], r["things"], r["sinceNavigation"], r["ms"], r["domContentLoaded"])
	r = b.do("responsiveness", map[string]any{"ms": 10000, "search": "gh-00"})
	t.Logf("under live updates: %.1f row updates/s applied, %v frames, frame gap p95 %.0f ms max %.0f ms; a search drew %v rows %.0f ms after the input (its 200 ms debounce included)",
		r["updatesPerSecond"], r["frames"], r["p95FrameGapMs"], r["maxFrameGapMs"], r["searchRows"], r["searchMs"])
	if r["searchRows"].(float64) == 0 {
		t.Errorf("search gh-00 drew no rows")
	}
}

// rowCount is the count the SQL console shows for thing.
func rowCount(r map[string]any, thing string) string {
	rows, _ := r["rows"].([]any)
	for _, row := range rows {
		if cells, _ := row.([]any); len(cells) == 2 && cells[0] == thing {
			return fmt.Sprint(cells[1])
		}
	}
	return ""
}

// sqlRefusal is the error POST /api/sql answers query with.
func sqlRefusal(t *testing.T, in *instance, query string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"query": query})
	resp, err := http.Post(in.url("/api/sql"), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	json.NewDecoder(resp.Body).Decode(&e)
	if resp.StatusCode == http.StatusOK || e.Error == "" {
		t.Fatalf("POST /api/sql %q: HTTP %d %q, want a refusal", query, resp.StatusCode, e.Error)
	}
	return e.Error
}

// TestDashboardFleetAfterRestart: after kill -9 and a restart the fleet
// index, seeded from ClickHouse up to its last offsets and followed in
// the log after them, counts each thing's publishes exactly once (as
// many as the log holds), wherever the sink was when the node died.
func TestDashboardFleetAfterRestart(t *testing.T) {
	in, ch := clickhouseInstance(t)
	in.start(ch...)
	mosquittoPub(t, in, "quiet", "sensors/quiet", `{"temperature":1}`)
	// ClickHouse has quiet's publish and connection (the seed's part);
	// the burst may be in it in part or not at all (the log's part).
	in.waitSQL(t, ch, "SELECT count() FROM telemetry", "1")
	in.waitSQL(t, ch, "SELECT count() FROM presence WHERE event = 'disconnected'", "1")
	var lines strings.Builder
	for i := range 2000 {
		fmt.Fprintf(&lines, "{\"temperature\":%d}\n", i)
	}
	pub := exec.Command("mosquitto_pub", "-h", "127.0.0.1", "-p", strconv.Itoa(in.mqtt), "-q", "1", "-i", "burst", "-t", "sensors/burst", "-l")
	pub.Stdin = strings.NewReader(lines.String())
	if out, err := pub.CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	in.kill() // the sink may be anywhere in the burst
	in.start(ch...)
	want := map[string]int64{}
	for _, r := range in.readEvents() {
		if env, err := schemas.DecodeEnvelope(r.Headers); err == nil && env.Type == schemas.EventPublish {
			want[string(r.Key)]++
		}
	}
	if want["burst"] != 2000 || want["quiet"] != 1 {
		t.Fatalf("the log holds %v publishes, want burst 2000 and quiet 1", want)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := map[string]int64{}
		var page struct {
			Ready  bool `json:"ready"`
			Things []struct {
				Thing     string `json:"thing"`
				Messages  int64  `json:"messages"`
				Connected bool   `json:"connected"`
			} `json:"things"`
		}
		resp, err := http.Get(in.url("/api/dashboard/fleet"))
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&page)
			resp.Body.Close()
		}
		for _, th := range page.Things {
			got[th.Thing] = th.Messages
			if th.Connected {
				t.Errorf("%s connected after its client disconnected", th.Thing)
			}
		}
		if page.Ready && got["burst"] == want["burst"] && got["quiet"] == want["quiet"] && len(got) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fleet after restart: %v (ready %v), want %v", got, page.Ready, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A publish after the restart counts once more.
	mosquittoPub(t, in, "quiet", "sensors/quiet", `{"temperature":2}`)
	deadline = time.Now().Add(30 * time.Second)
	for {
		var v struct {
			Thing struct {
				Messages int64 `json:"messages"`
			} `json:"thing"`
		}
		resp, err := http.Get(in.url("/api/dashboard/things/quiet"))
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
		}
		if v.Thing.Messages == 2 {
			break
		}
		if time.Now().After(deadline) || v.Thing.Messages > 2 {
			t.Fatalf("quiet: %d messages, want 2", v.Thing.Messages)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
