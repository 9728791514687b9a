package e2e

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iotpipe/iotpipe/devices/fleet"
	"github.com/iotpipe/iotpipe/devices/profile"
	"github.com/iotpipe/iotpipe/rulesql/pewma"
)

// Detection scores the wind_spikes rule (PEWMA with beta 0, see
// rules/detect/wind_spikes.sql) against
// the spikes the simulator injected into the wind profile's wind_speed.
type Detection struct {
	Devices  int           `json:"devices"`
	Rate     float64       `json:"rate"`
	Duration time.Duration `json:"duration_ns"`
	Seed     uint64        `json:"seed"`
	Fleet    fleet.Report  `json:"fleet"`
	// Points the detector scored (acknowledged points after its 30
	// training points per device).
	Scored uint64 `json:"scored"`
	// Injected spikes (acknowledged, after training); Found among them
	// flagged at their own point; FalsePositives points flagged with no
	// spike.
	Injected       uint64 `json:"injected"`
	Found          uint64 `json:"found"`
	FalsePositives uint64 `json:"false_positives"`
	// Missed lists a few missed spikes (device/seq).
	Missed []string `json:"missed,omitempty"`
	// Replays are the same acknowledged points, per device in order,
	// through rulesql/pewma in this process: with the rule's parameters
	// (it must flag exactly what the pipeline flagged: Differ counts the
	// points where it does not) and with others, for comparison.
	Replays []Replay `json:"replays"`
	Differ  int      `json:"differ"`
}

// Replay is the detection of the acknowledged points by rulesql/pewma
// with one set of parameters.
type Replay struct {
	Params         pewma.Params `json:"params"`
	Found          uint64       `json:"found"`
	FalsePositives uint64       `json:"false_positives"`
}

// ruleParams are wind_spikes's parameters (rules/detect/wind_spikes.sql).
var ruleParams = pewma.Params{Alpha0: 0.95, Beta: 0, T: pewmaTraining, Threshold: 0.002}

// replayParams are the parameter sets replayed: the rule's first, then
// PEWMA's defaults and another, for comparison.
var replayParams = []pewma.Params{
	ruleParams,
	pewma.DefaultParams(),
	{Alpha0: 0.98, Beta: 0.1, T: 30, Threshold: 0.0005},
}

// FPRate is the false positives per normal point scored.
func (d *Detection) FPRate() float64 {
	if n := d.Scored - d.Injected; n > 0 {
		return float64(d.FalsePositives) / float64(n)
	}
	return 0
}

// pewmaTraining is PEWMA's T: points absorbed before any is flagged.
const pewmaTraining = 30

// detect runs the wind fleet (spikes only, no disconnects, so every
// sent point is settled) against an instance running wind_spikes.
func (h *harness) detect(ctx context.Context) (*Detection, error) {
	cfg := h.cfg
	p, err := profile.Load("wind")
	if err != nil {
		return nil, err
	}
	p.Anomalies.Share = cfg.DetectShare
	p.Anomalies.LevelShift.Weight, p.Anomalies.Stuck.Weight = 0, 0
	if err := p.Recheck(); err != nil {
		return nil, err
	}
	in, err := startInstance(ctx, cfg, "detect", "run", map[string]string{"wind_spikes.sql": h.rules["detect/wind_spikes.sql"]})
	if err != nil {
		return nil, err
	}
	defer h.finish(in)
	smp := startSampler(ctx, in, 250*time.Millisecond)
	defer smp.stop()
	fmt.Fprintf(cfg.Log, "  detect: %d wind devices, %.0f points/s for %s, spikes in %.2f%% of points\n",
		cfg.DetectDevices, cfg.DetectRate, cfg.DetectDuration, 100*cfg.DetectShare)

	type key struct {
		dev string
		seq uint64
	}
	type point struct {
		seq   uint64
		value float64
	}
	var mu sync.Mutex
	acked := map[string]uint64{} // device -> acknowledged points
	series := map[string][]point{}
	spikes := map[key]bool{}
	truth, err := os.Create(filepath.Join(cfg.OutDir, "detect-truth.jsonl"))
	if err != nil {
		return nil, err
	}
	defer truth.Close()
	rep, err := fleet.Run(ctx, fleet.Config{
		Addr: in.mqttAddr(), Profile: p, Devices: cfg.DetectDevices, Rate: cfg.DetectRate,
		Duration: cfg.DetectDuration, Seed: cfg.DetectSeed, QoS: 1, NoDisconnects: true, Truth: truth,
		OnPublish: func(o fleet.Outcome) {
			if !o.Acked {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			acked[o.Device]++
			series[o.Device] = append(series[o.Device], point{o.Point.Seq, o.Point.Values[0]})
			if o.Point.Anomaly != nil && o.Point.Seq >= pewmaTraining {
				spikes[key{o.Device, o.Point.Seq}] = true
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("detect: the wind fleet: %w", err)
	}
	d := &Detection{Devices: cfg.DetectDevices, Rate: cfg.DetectRate, Duration: cfg.DetectDuration, Seed: cfg.DetectSeed, Fleet: rep}
	pt := &part{h: h, name: "detect", in: in, smp: smp}
	if _, err := pt.drain(ctx); err != nil {
		return d, fmt.Errorf("detect: %w", err)
	}
	// The anomalies are derived records: wait until their count settles.
	var out string
	for prev := "-"; ; prev = out {
		out, err = in.query(ctx, "SELECT thing, JSONExtractUInt(payload, 'output', 'seq') FROM anomalies WHERE rule = 'wind_spikes' ORDER BY thing, 2 FORMAT TSV")
		if err != nil {
			return d, fmt.Errorf("detect: read the anomalies: %w", err)
		}
		if out == prev {
			break
		}
		time.Sleep(2 * time.Second)
	}
	flagged := map[key]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		dev, seq, ok := strings.Cut(line, "\t")
		n, err := strconv.ParseUint(seq, 10, 64)
		if ok && err == nil {
			flagged[key{dev, n}] = true
		}
	}
	for _, n := range acked {
		if n > pewmaTraining {
			d.Scored += n - pewmaTraining
		}
	}
	d.Injected = uint64(len(spikes))
	for k := range spikes {
		if flagged[k] {
			d.Found++
		} else if len(d.Missed) < 10 {
			d.Missed = append(d.Missed, fmt.Sprintf("%s/%d", k.dev, k.seq))
		}
	}
	for k := range flagged {
		if !spikes[k] {
			d.FalsePositives++
		}
	}
	for i, pp := range replayParams {
		rp := Replay{Params: pp}
		for dev, pts := range series {
			slices.SortFunc(pts, func(a, b point) int { return cmp.Compare(a.seq, b.seq) })
			var st pewma.State
			for _, x := range pts {
				k := key{dev, x.seq}
				r := st.Update(pp, x.value)
				switch {
				case r.Anomaly && spikes[k]:
					rp.Found++
				case r.Anomaly:
					rp.FalsePositives++
				}
				if i == 0 && r.Anomaly != flagged[k] {
					d.Differ++
				}
			}
		}
		d.Replays = append(d.Replays, rp)
	}
	fmt.Fprintf(cfg.Log, "    %d spikes injected, %d found, %d false positives among %d normal points scored\n",
		d.Injected, d.Found, d.FalsePositives, d.Scored-d.Injected)
	return d, nil
}
