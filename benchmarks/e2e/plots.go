package e2e

import (
	"fmt"
	"image/color"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

var palette = []color.Color{
	color.RGBA{R: 31, G: 119, B: 180, A: 255},
	color.RGBA{R: 255, G: 127, B: 14, A: 255},
	color.RGBA{R: 44, G: 160, B: 44, A: 255},
	color.RGBA{R: 214, G: 39, B: 40, A: 255},
	color.RGBA{R: 148, G: 103, B: 189, A: 255},
	color.RGBA{R: 140, G: 86, B: 75, A: 255},
}

// plotThroughput draws one configuration's rates over its whole part:
// records logged, events processed and rows confirmed per second, each
// over two seconds (the counters move in batches), against seconds since
// the part started.
func plotThroughput(path string, c *Capacity) error {
	s := c.Samples
	t0 := s[0].At
	series := []struct {
		name string
		f    func(sample) float64
	}{
		{"logged/s (ingest)", func(x sample) float64 { return x.Logged }},
		{"processed/s (processors)", func(x sample) float64 { return x.Processed }},
		{"rows/s (ClickHouse)", func(x sample) float64 { return x.Rows }},
	}
	p := plot.New()
	p.Title.Text = fmt.Sprintf("iotpipe run, %s: throughput (capacity %s events/s)", map[string]string{"rules": "10 rules", "norules": "no rules"}[c.Config], human(c.Rate))
	p.X.Label.Text = "seconds"
	p.Y.Label.Text = "per second"
	p.Y.Tick.Marker = humanTicks{}
	p.Legend.Top = true
	for i, se := range series {
		var xys plotter.XYs
		j := 0
		for k := range s {
			for j < k && s[k].At.Sub(s[j].At) > 2*time.Second {
				j++
			}
			if dt := s[k].At.Sub(s[j].At).Seconds(); dt > 0 {
				xys = append(xys, plotter.XY{X: s[k].At.Sub(t0).Seconds(), Y: (se.f(s[k]) - se.f(s[j])) / dt})
			}
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color = palette[i]
		l.Width = vg.Points(1)
		p.Add(l)
		p.Legend.Add(se.name, l)
	}
	// The offered rate of each step, over its window.
	var offered plotter.XYs
	for _, st := range c.Steps {
		if st.Offered > 0 {
			offered = append(offered, plotter.XY{X: st.Start.Sub(t0).Seconds(), Y: st.Offered}, plotter.XY{X: st.End.Sub(t0).Seconds(), Y: st.Offered})
		}
	}
	if len(offered) > 0 {
		sc, err := plotter.NewScatter(offered)
		if err != nil {
			return err
		}
		sc.Color = palette[3]
		p.Add(sc)
		p.Legend.Add("offered (window start and end)", sc)
	}
	return p.Save(10*vg.Inch, 4*vg.Inch, path)
}

// plotLatencyCDF draws the probes' publish→row and publish→webhook
// latency distributions at each latency load, on a log scale.
func plotLatencyCDF(path string, steps []Step) error {
	p := plot.New()
	p.Title.Text = "iotpipe run, 10 rules: latency of the probes' points"
	p.X.Label.Text = "milliseconds (log scale)"
	p.Y.Label.Text = "share of points"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	i := 0
	for _, path := range []string{pathRow, pathWebhook} {
		for _, st := range steps {
			ds := st.CDF[path]
			if len(ds) == 0 {
				continue
			}
			var xys plotter.XYs
			for k, d := range ds {
				xys = append(xys, plotter.XY{X: max(float64(d)/1e6, 0.1), Y: cdfQuantiles[k]})
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return err
			}
			l.Color = palette[i%len(palette)]
			l.Width = vg.Points(1.2)
			if path == pathWebhook {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
			}
			p.Add(l)
			p.Legend.Add(fmt.Sprintf("publish→%s at %s", path, st.Label[len("latency "):]), l)
			i++
		}
	}
	if i == 0 {
		return fmt.Errorf("no probe latencies to draw")
	}
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// humanTicks labels an axis' default ticks as 25k, 1.5M.
type humanTicks struct{}

// Ticks returns plot.DefaultTicks' ticks with shorter labels.
func (humanTicks) Ticks(min, max float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(min, max)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = human(ts[i].Value)
		}
	}
	return ts
}
