package profile

import (
	"encoding/json"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestBuiltinProfilesParse(t *testing.T) {
	names := Builtin()
	if want := []string{"fridge", "greenhouse", "wind"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("built-in profiles %v, want %v", names, want)
	}
	for _, n := range names {
		p, err := Load(n)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		if p.Name != n || p.Description == "" || !strings.Contains(p.Topic, "{device}") {
			t.Errorf("%s: name %q, description %q, topic %q", n, p.Name, p.Description, p.Topic)
		}
		if p.Anomalies.Share <= 0 || p.Shadow.ReportEvery <= 0 || p.Connection.AbruptDisconnect <= 0 {
			t.Errorf("%s: a built-in profile exercises anomalies, shadows and disconnects", n)
		}
	}
	if _, err := Load("nosuch"); err == nil || !strings.Contains(err.Error(), "fridge, greenhouse, wind") {
		t.Errorf("Load(nosuch): %v; want the built-in names listed", err)
	}
}

func TestParseFileAndDefaults(t *testing.T) {
	p, err := Load("testdata/pumps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Fields[0].Base; got != (Range{3.2, 3.2}) {
		t.Errorf("scalar range: %v", got)
	}
	if got := p.Fields[1].Base; got != (Range{10, 20}) {
		t.Errorf("map range: %v", got)
	}
	if got := *p.Fields[1].Decimals; got != DefaultDecimals {
		t.Errorf("default decimals %d", got)
	}
	if got := p.Anomalies.Stuck.Length; got != (Range{5, 10}) {
		t.Errorf("stuck length %v", got)
	}
	if got := p.Anomalies.Spike.Length; got != (Range{1, 1}) {
		t.Errorf("a spike is one point: %v", got)
	}
	if got := p.Connection.Offline; got != (DurationRange{500 * time.Millisecond, 500 * time.Millisecond}) {
		t.Errorf("offline %v", got)
	}
	if got := p.WillTopicFor("pump-0001"); got != "site/pump-0001/lwt" {
		t.Errorf("will topic %q", got)
	}
	if got := p.TopicFor(p.Device(7)); got != "site/pump-0007/pump" {
		t.Errorf("topic %q", got)
	}
	// Defaults of a minimal profile.
	m, err := Parse([]byte("name: m\nfields: [{name: x, base: 1, noise: 1}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Topic != "m/{device}/telemetry" || m.DevicePrefix != "m-" || m.Connection.WillTopic != "m/{device}/status" ||
		m.Connection.Keepalive != DefaultKeepalive || m.Connection.Offline != DefaultOffline ||
		*m.Anomalies.Warmup != DefaultWarmup || *m.Anomalies.Gap != DefaultGap {
		t.Errorf("defaults: %+v", m)
	}
}

func TestParseErrors(t *testing.T) {
	const ok = "name: t\nfields: [{name: x, base: 1, noise: 1}]\n"
	for _, tc := range []struct{ yaml, want string }{
		{"", "empty profile"},
		{"fields: [{name: x, base: 1}]", "name is required"},
		{"name: t\n", "at least one field"},
		{ok + "colour: red\n", "field colour not found"},
		{"name: t\nfields: [{name: x, base: 1, nois: 1}]", "field nois not found"},
		{"name: t\nfields: [{name: seq, base: 1}]", `"seq" is the point's own key`},
		{"name: t\nfields: [{name: x, base: 1}, {name: x, base: 2}]", `field "x" appears twice`},
		{"name: t\nfields: [{name: x, base: [3, 1]}]", "base must be a finite range"},
		{"name: t\nfields: [{name: x, base: [1, 2, 3]}]", "a range is [min, max]"},
		{"name: t\nfields: [{name: x, base: {min: 1}}]", "needs both min and max"},
		{"name: t\nfields: [{name: x, base: .nan}]", "finite range"},
		{"name: t\nfields: [{name: x, base: 1, noise: -1}]", "not negative"},
		{"name: t\nfields: [{name: x, base: 1, cycle: {amplitude: 1}}]", "period (points) at least 2"},
		{"name: t\nfields: [{name: x, base: 1, decimals: 12}]", "decimals"},
		{"name: t\nfields: [{name: x, base: 1, min: 5, max: 1}]", "min <= max"},
		{"name: t\nfields: [{name: b, type: bool, p: 2}]", "between 0 and 1"},
		{"name: t\nfields: [{name: b, type: bool, noise: 1}]", "only p"},
		{"name: t\nfields: [{name: b, type: text}]", "number or bool"},
		{ok + "anomalies: {share: 0.9, spike: {weight: 1, magnitude: 5}}", "between 0 and 0.5"},
		{ok + "anomalies: {share: 0.1}", "no kind"},
		{ok + "anomalies: {share: 0.1, fields: [y], spike: {weight: 1, magnitude: 5}}", `no field "y"`},
		{ok + "anomalies: {share: 0.1, spike: {weight: 1}}", "magnitude must be a range of positive"},
		{ok + "anomalies: {share: 0.1, spike: {weight: 1, magnitude: 5, length: 3}}", "one point long"},
		{ok + "anomalies: {share: 0.1, stuck: {weight: 1, length: 0}}", "whole numbers of points"},
		{ok + "anomalies: {share: 0.1, stuck: {weight: 1, length: 2.5}}", "whole numbers of points"},
		{ok + "anomalies: {share: 0.1, stuck: {weight: 1, magnitude: 2, length: 2}}", "has no magnitude"},
		{ok + "anomalies: {share: 0.4, gap: 100, spike: {weight: 1, magnitude: 5}}", "cannot be reached"},
		{"name: t\nfields: [{name: x, base: 1}]\nanomalies: {share: 0.1, spike: {weight: 1, magnitude: 5}}", "no number field has noise"},
		{ok + "shadow: {desired_every: 5}", "desired has no keys"},
		{ok + "shadow: {report_fields: [nope]}", `no field "nope"`},
		{ok + "shadow: {desired_every: 5, desired: {mode: []}}", "non-empty list"},
		{ok + "connection: {clean_disconnect: 0.7, abrupt_disconnect: 0.7}", "together at most 1"},
		{ok + "connection: {offline: [3s, 1s]}", "offline must be min <= max"},
		{ok + "connection: {offline: [1s]}", "a duration range is"},
		{ok + "connection: {backoff_initial: 2s, backoff_max: 1s}", "backoff_initial"},
		{ok + "connection: {keepalive: 100h}", "keepalive"},
		{"name: t\ntopic: a/+/b\nfields: [{name: x, base: 1}]", "without wildcards"},
		{"name: t\ndevice_prefix: a/b\nfields: [{name: x, base: 1}]", "device_prefix"},
		{"name: 'a b'\nfields: [{name: x, base: 1}]", "use letters"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q): %v; want an error with %q", tc.yaml, err, tc.want)
		}
	}
	if _, err := Parse([]byte(ok)); err != nil {
		t.Errorf("the base case fails: %v", err)
	}
}

// points returns n points of device dev.
func points(p *Profile, seed uint64, dev, n int) []Point {
	g := p.NewGenerator(seed, dev)
	out := make([]Point, n)
	for i := range out {
		out[i] = g.Next()
	}
	return out
}

func TestGenerateDeterministic(t *testing.T) {
	for _, name := range append(Builtin(), "testdata/pumps.yaml") {
		p, err := Load(name)
		if err != nil {
			t.Fatal(err)
		}
		a, b := points(p, 42, 3, 3000), points(p, 42, 3, 3000)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: the same seed and device gave different points", name)
		}
		if reflect.DeepEqual(a, points(p, 43, 3, 3000)) || reflect.DeepEqual(a, points(p, 42, 4, 3000)) {
			t.Errorf("%s: another seed or device gave the same points", name)
		}
	}
}

// A point's normal values do not depend on the anomaly settings: the
// ground truth's "expected" is exactly what the point would have been,
// and every other value is untouched.
func TestAnomaliesLeaveOtherValuesAlone(t *testing.T) {
	p, err := Load("testdata/pumps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	clean, _ := Load("testdata/pumps.yaml")
	clean.Anomalies.Share = 0
	if err := clean.Recheck(); err != nil {
		t.Fatal(err)
	}
	with, without := points(p, 9, 1, 5000), points(clean, 9, 1, 5000)
	n := 0
	for i := range with {
		for f := range p.Fields {
			want := without[i].Values[f]
			if a := with[i].Anomaly; a != nil && a.Field == p.Fields[f].Name {
				n++
				if a.Expected != want {
					t.Fatalf("point %d: expected %v, the point without anomalies has %v", i, a.Expected, want)
				}
				if a.Value != with[i].Values[f] {
					t.Fatalf("point %d: the truth says %v was sent, the point has %v", i, a.Value, with[i].Values[f])
				}
				continue
			}
			if with[i].Values[f] != want {
				t.Fatalf("point %d field %s: %v with anomalies, %v without", i, p.Fields[f].Name, with[i].Values[f], want)
			}
		}
	}
	if n == 0 {
		t.Fatal("no anomaly was injected")
	}
}

func TestAnomaliesAtConfiguredShare(t *testing.T) {
	base, err := os.ReadFile("testdata/pumps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		share float64
		kinds map[Kind]float64 // weights
	}{
		{"spikes 1%", 0.01, map[Kind]float64{Spike: 1}},
		{"spikes 5%", 0.05, map[Kind]float64{Spike: 1}},
		{"level shifts 2%", 0.02, map[Kind]float64{LevelShift: 1}},
		{"stuck 10%", 0.10, map[Kind]float64{Stuck: 1}},
		{"mixed 3%", 0.03, map[Kind]float64{Spike: 2, LevelShift: 1, Stuck: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Parse(base)
			if err != nil {
				t.Fatal(err)
			}
			a := &p.Anomalies
			a.Share = tc.share
			a.Spike.Weight, a.LevelShift.Weight, a.Stuck.Weight = tc.kinds[Spike], tc.kinds[LevelShift], tc.kinds[Stuck]
			if err := p.Recheck(); err != nil {
				t.Fatal(err)
			}
			const devices, n = 20, 20000
			anomalous, total := 0, 0
			kinds := map[Kind]int{}
			for dev := range devices {
				pts := points(p, 7, dev, n)
				lastEnd := -1
				for i, pt := range pts {
					if i < *a.Warmup {
						if pt.Anomaly != nil {
							t.Fatalf("device %d: anomaly at point %d, inside the warm-up of %d", dev, i, *a.Warmup)
						}
						continue
					}
					total++
					an := pt.Anomaly
					if an == nil {
						continue
					}
					anomalous++
					kinds[an.Kind]++
					if an.Index == 0 {
						if lastEnd >= 0 && i-lastEnd-1 < *a.Gap {
							t.Fatalf("device %d: episode at %d only %d points after the last one", dev, i, i-lastEnd-1)
						}
						checkEpisode(t, p, pts, i)
					}
					lastEnd = i
				}
			}
			got := float64(anomalous) / float64(total)
			if math.Abs(got-tc.share) > 0.1*tc.share {
				t.Errorf("anomalous share %.4f, configured %.4f", got, tc.share)
			}
			for k := range kinds {
				if tc.kinds[k] == 0 {
					t.Errorf("kind %s injected with weight 0", k)
				}
			}
			t.Logf("share %.4f (configured %.4f) over %d points: %v", got, tc.share, total, kinds)
		})
	}
}

// checkEpisode checks the episode starting at point i of pts.
func checkEpisode(t *testing.T, p *Profile, pts []Point, i int) {
	t.Helper()
	first := pts[i].Anomaly
	f := p.Fields[p.FieldIndex(first.Field)]
	c := map[Kind]KindConfig{Spike: p.Anomalies.Spike, LevelShift: p.Anomalies.LevelShift, Stuck: p.Anomalies.Stuck}[first.Kind]
	n, j := 0, i
	for ; j < len(pts) && pts[j].Anomaly != nil && pts[j].Anomaly.Episode == first.Episode; j++ {
		a := pts[j].Anomaly
		if a.Index != n || a.Kind != first.Kind || a.Field != first.Field {
			t.Fatalf("point %d: %+v in the episode of %+v", j, a, first)
		}
		scale := math.Pow(10, -float64(*f.Decimals))
		switch a.Kind {
		case Spike, LevelShift:
			off := math.Abs(a.Value-a.Expected) / f.Noise
			if off < c.Magnitude.Min-scale/f.Noise || off > c.Magnitude.Max+scale/f.Noise {
				t.Fatalf("point %d: %s of %.2f noise sds, configured %v", j, a.Kind, off, c.Magnitude)
			}
		case Stuck:
			if a.Value != pts[i-1].Values[p.FieldIndex(a.Field)] {
				t.Fatalf("point %d: stuck at %v, the value before the episode was %v", j, a.Value, pts[i-1].Values[p.FieldIndex(a.Field)])
			}
		}
		n++
	}
	if (float64(n) < c.Length.Min && j < len(pts)) || float64(n) > c.Length.Max {
		t.Fatalf("point %d: %s of %d points, configured %v", i, first.Kind, n, c.Length)
	}
}

func TestBehaviourPerPoint(t *testing.T) {
	p, err := Load("testdata/pumps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pts := points(p, 1, 0, 20000)
	var reports, desired, clean, abrupt int
	for _, pt := range pts {
		if pt.ReportShadow {
			reports++
		}
		if pt.Desired != nil {
			desired++
			if v := pt.Desired["speed"]; v != "low" && v != "high" {
				t.Fatalf("desired %v", pt.Desired)
			}
		}
		switch pt.Disconnect {
		case Clean:
			clean++
		case Abrupt:
			abrupt++
		}
	}
	if reports != 2000 || desired != 800 {
		t.Errorf("%d reports (want every 10th point: 2000), %d desired (every 25th: 800)", reports, desired)
	}
	for name, n := range map[string]int{"clean": clean, "abrupt": abrupt} {
		if n < 160 || n > 240 { // 1% of 20000
			t.Errorf("%d %s disconnects, want about 200", n, name)
		}
	}
}

func TestAppendPayload(t *testing.T) {
	p, err := Load("testdata/pumps.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pt := Point{Seq: 12, Values: []float64{3.2004, 15, 1}}
	b := p.AppendPayload(nil, "pump-0001", &pt, time.UnixMilli(1700000000123))
	want := `{"device":"pump-0001","seq":12,"ts":1700000000123,"pressure":3.200,"flow":15.00,"running":true}`
	if string(b) != want {
		t.Fatalf("payload\n %s\nwant\n %s", b, want)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
}
