package fleet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/iotpipe/iotpipe/devices/profile"
)

// broker is an in-process mochi-mqtt broker (allow-all) on a fixed
// address, so it can be stopped and started again where devices expect it.
type broker struct {
	addr string
	srv  *mqtt.Server
	once sync.Once
}

func (b *broker) stop() { b.once.Do(func() { b.srv.Close() }) }

func startBroker(t *testing.T, addr string) *broker {
	t.Helper()
	if addr == "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr = l.Addr().String()
		l.Close()
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "t", Address: addr})); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	b := &broker{addr: addr, srv: srv}
	t.Cleanup(b.stop)
	return b
}

// recorder is a paho subscriber keeping every message it receives.
type recorder struct {
	mu   sync.Mutex
	msgs map[string][][]byte // topic -> payloads
}

func subscribe(t *testing.T, addr string, filters ...string) *recorder {
	t.Helper()
	r := &recorder{msgs: map[string][][]byte{}}
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("rec-%d", time.Now().UnixNano())).
		SetOrderMatters(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	for _, f := range filters {
		tok := c.Subscribe(f, 1, func(_ paho.Client, m paho.Message) {
			r.mu.Lock()
			r.msgs[m.Topic()] = append(r.msgs[m.Topic()], append([]byte(nil), m.Payload()...))
			r.mu.Unlock()
		})
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", f, tok.Error())
		}
	}
	return r
}

// matching returns the payloads received on topics matching pred.
func (r *recorder) matching(pred func(topic string) bool) map[string][][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][][]byte{}
	for topic, ps := range r.msgs {
		if pred(topic) {
			out[topic] = append(out[topic], ps...)
		}
	}
	return out
}

func loadProfile(t *testing.T) *profile.Profile {
	t.Helper()
	p, err := profile.Load("testdata/pumps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type payload struct {
	Device   string  `json:"device"`
	Seq      uint64  `json:"seq"`
	TS       int64   `json:"ts"`
	Pressure float64 `json:"pressure"`
	Flow     float64 `json:"flow"`
	Running  bool    `json:"running"`
}

// What the devices send is what the profile's generators say, every
// acknowledged point arrives once, and the ground truth lists exactly the
// acknowledged anomalous points with the values that were sent.
func TestFleetSendsWhatTheProfileSays(t *testing.T) {
	b := startBroker(t, "")
	rec := subscribe(t, b.addr, "site/+/pump")
	p := loadProfile(t)
	var truth bytes.Buffer
	var mu sync.Mutex
	acked := map[string]bool{}
	rep, err := Run(t.Context(), Config{
		Addr: b.addr, Profile: p, Devices: 10, Rate: 500, Duration: 3 * time.Second, Seed: 11, QoS: 1,
		NoDisconnects: true, Truth: &truth,
		OnPublish: func(o Outcome) {
			if o.Acked {
				mu.Lock()
				acked[fmt.Sprintf("%s/%d", o.Device, o.Point.Seq)] = true
				mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 0 || rep.Failed != 0 || rep.Sent != rep.Acked || rep.Acked != uint64(len(acked)) {
		t.Fatalf("report %+v, %d acked outcomes", rep, len(acked))
	}
	if rep.Acked < 1000 {
		t.Fatalf("only %d points acknowledged in 3s at 500/s", rep.Acked)
	}
	waitFor(t, "every acknowledged point at the subscriber", func() bool {
		n := 0
		for _, ps := range rec.matching(func(string) bool { return true }) {
			n += len(ps)
		}
		return n >= len(acked)
	})

	// Regenerate each device's points from the seed: the payloads match.
	gens := map[string][]profile.Point{}
	seen := map[string]int{}
	for topic, ps := range rec.matching(func(string) bool { return true }) {
		for _, raw := range ps {
			var pl payload
			if err := json.Unmarshal(raw, &pl); err != nil {
				t.Fatalf("%s: %v: %s", topic, err, raw)
			}
			if topic != p.TopicFor(pl.Device) {
				t.Fatalf("device %s published on %s", pl.Device, topic)
			}
			seen[fmt.Sprintf("%s/%d", pl.Device, pl.Seq)]++
			var idx int
			fmt.Sscanf(strings.TrimPrefix(pl.Device, p.DevicePrefix), "%d", &idx)
			pts := gens[pl.Device]
			if pts == nil {
				g := p.NewGenerator(11, idx)
				for range 5000 {
					pts = append(pts, g.Next())
				}
				gens[pl.Device] = pts
			}
			want := pts[pl.Seq].Values
			if pl.Pressure != want[0] || pl.Flow != want[1] || pl.Running != (want[2] == 1) {
				t.Fatalf("%s seq %d: sent %+v, the generator says %v", pl.Device, pl.Seq, pl, want)
			}
		}
	}
	for k := range acked {
		if seen[k] != 1 {
			t.Errorf("acknowledged %s received %d times", k, seen[k])
		}
	}

	// The ground truth: one line per acknowledged anomalous point.
	lines := 0
	byKind := map[profile.Kind]uint64{}
	sc := bufio.NewScanner(&truth)
	for sc.Scan() {
		var r TruthRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		lines++
		if !r.Acked || !acked[fmt.Sprintf("%s/%d", r.Device, r.Seq)] {
			t.Errorf("truth line for a point not acknowledged: %s", sc.Bytes())
			continue
		}
		pt := gens[r.Device][r.Seq]
		if pt.Anomaly == nil || *pt.Anomaly != r.Anomaly || pt.Values[p.FieldIndex(r.Field)] != r.Value {
			t.Errorf("truth %s; the generator's point %+v (anomaly %+v)", sc.Bytes(), pt, pt.Anomaly)
		}
		if r.TS != r.Time.UnixMilli() {
			t.Errorf("truth ts %d and time %s differ", r.TS, r.Time)
		}
		byKind[r.Kind]++
	}
	want := 0
	for k := range acked {
		var dev string
		var seq uint64
		i := strings.LastIndexByte(k, '/')
		dev = k[:i]
		fmt.Sscanf(k[i+1:], "%d", &seq)
		if gens[dev][seq].Anomaly != nil {
			want++
		}
	}
	if lines != want || want == 0 {
		t.Errorf("%d truth lines, %d acknowledged anomalous points", lines, want)
	}
	for _, k := range profile.Kinds {
		if byKind[k] != rep.Anomalies[k] {
			t.Errorf("report counts %d %s points, the truth %d", rep.Anomalies[k], k, byKind[k])
		}
	}
	t.Logf("%d points acknowledged (%.0f/s), %d anomalous: %v", rep.Acked, rep.AckedPerSec, lines, byKind)
}

// An abrupt disconnect makes the broker publish the device's Will; a
// clean one does not; devices come back.
func TestFleetDisconnectsAndWill(t *testing.T) {
	b := startBroker(t, "")
	rec := subscribe(t, b.addr, "pumps/+/status")
	p := loadProfile(t)
	p.Connection.CleanDisconnect, p.Connection.AbruptDisconnect = 0.02, 0.02
	rep, err := Run(t.Context(), Config{Addr: b.addr, Profile: p, Devices: 10, Rate: 400, Duration: 3 * time.Second, Seed: 3, QoS: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.AbruptDisconnects == 0 || rep.CleanDisconnects == 0 || rep.Reconnects == 0 {
		t.Fatalf("no disconnects or reconnects: %+v", rep.Stats)
	}
	if rep.Errors != 0 || rep.Failed != 0 {
		t.Fatalf("errors: %+v", rep.Stats)
	}
	wills := func() int {
		n := 0
		for _, ps := range rec.matching(func(string) bool { return true }) {
			for _, pl := range ps {
				if !strings.Contains(string(pl), `"status":"offline"`) {
					t.Fatalf("will %s", pl)
				}
				n++
			}
		}
		return n
	}
	waitFor(t, "a Will per abrupt disconnect", func() bool { return wills() >= int(rep.AbruptDisconnects) })
	time.Sleep(500 * time.Millisecond)
	if n := wills(); n != int(rep.AbruptDisconnects) {
		t.Fatalf("%d Wills for %d abrupt and %d clean disconnects", n, rep.AbruptDisconnects, rep.CleanDisconnects)
	}
	t.Logf("%+v", rep.Stats)
}

// Devices report their shadow state periodically and answer a delta by
// reporting its state.
func TestFleetShadowReportsAndDeltas(t *testing.T) {
	b := startBroker(t, "")
	p := loadProfile(t)
	rec := subscribe(t, b.addr, "$aws/things/+/shadow/update")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan Report, 1)
	go func() {
		rep, err := Run(ctx, Config{Addr: b.addr, Profile: p, Devices: 3, Rate: 60, Duration: 20 * time.Second, Seed: 1, QoS: 1, NoDisconnects: true})
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	reports := func(dev string) []map[string]any {
		var out []map[string]any
		for _, pl := range rec.matching(func(topic string) bool { return topic == "$aws/things/"+dev+"/shadow/update" })["$aws/things/"+dev+"/shadow/update"] {
			var m struct {
				State struct {
					Reported map[string]any `json:"reported"`
				} `json:"state"`
			}
			if err := json.Unmarshal(pl, &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m.State.Reported)
		}
		return out
	}
	waitFor(t, "a periodic report", func() bool { return len(reports("pump-0001")) > 0 })
	r := reports("pump-0001")[0]
	if r["model"] != "P-100" || r["pressure"] == nil {
		t.Fatalf("periodic report %v: want the static state and the pressure", r)
	}
	pub := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.addr).SetClientID("shadow-service"))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pub.Disconnect(100)
	tok := pub.Publish("$aws/things/pump-0001/shadow/update/delta", 1, false, `{"version":4,"state":{"speed":"high","limits":{"max":7}}}`)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	waitFor(t, "the delta's state reported", func() bool {
		for _, r := range reports("pump-0001") {
			if r["speed"] == "high" && fmt.Sprint(r["limits"]) == "map[max:7]" && len(r) == 2 {
				return true
			}
		}
		return false
	})
	cancel()
	rep := <-done
	if rep.Deltas != 1 || rep.DeltaReports != 1 || rep.ShadowReports == 0 {
		t.Fatalf("deltas %d, answered %d, periodic reports %d", rep.Deltas, rep.DeltaReports, rep.ShadowReports)
	}
}

// The broker goes away and comes back: devices notice, retry with
// backoff and send again.
func TestFleetReconnectsAfterBrokerRestart(t *testing.T) {
	b := startBroker(t, "")
	p := loadProfile(t)
	var mu sync.Mutex
	var ackTimes []time.Time
	done := make(chan Report, 1)
	go func() {
		rep, err := Run(t.Context(), Config{Addr: b.addr, Profile: p, Devices: 5, Rate: 100, Duration: 6 * time.Second, Seed: 1, QoS: 1,
			NoDisconnects: true, NoShadows: true,
			OnPublish: func(o Outcome) {
				if o.Acked {
					mu.Lock()
					ackTimes = append(ackTimes, o.Done)
					mu.Unlock()
				}
			}})
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	time.Sleep(1500 * time.Millisecond)
	b.stop()
	down := time.Now()
	time.Sleep(time.Second)
	startBroker(t, b.addr)
	up := time.Now()
	rep := <-done
	if rep.Lost == 0 || rep.ConnectFailures == 0 || rep.Reconnects == 0 {
		t.Fatalf("lost %d, failed attempts %d, reconnects %d", rep.Lost, rep.ConnectFailures, rep.Reconnects)
	}
	mu.Lock()
	defer mu.Unlock()
	before, after := 0, 0
	for _, at := range ackTimes {
		switch {
		case at.Before(down):
			before++
		case at.After(up):
			after++
		}
	}
	if before == 0 || after == 0 {
		t.Fatalf("acknowledged %d before the broker stopped and %d after it came back", before, after)
	}
	t.Logf("%d acked before, %d after; %+v", before, after, rep.Stats)
}
