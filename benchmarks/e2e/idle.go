package e2e

import (
	"context"
	"fmt"

	"github.com/iotpipe/iotpipe/benchmarks/idleconns"
)

// Idle is the memory of idle connections on `iotpipe ingest` alone
// (benchmarks/idleconns: connected, one QoS 1 publish acknowledged),
// measured in a fresh instance per count.
type Idle struct {
	Conns             int     `json:"conns"`
	RSSBefore         int64   `json:"rss_before"`
	RSSAfter          int64   `json:"rss_after"`
	RSSPerConn        float64 `json:"rss_per_conn"`
	HeapPerConn       float64 `json:"heap_per_conn"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn"`
	ConnectRate       float64 `json:"connect_rate"`
}

func (h *harness) idle(ctx context.Context) ([]Idle, error) {
	var out []Idle
	for _, n := range h.cfg.IdleConns {
		in, err := startInstance(ctx, h.cfg, "idle", "ingest", nil)
		if err != nil {
			return out, err
		}
		fmt.Fprintf(h.cfg.Log, "  %d idle connections\n", n)
		res, fleet, err := idleconns.Measure(ctx, idleconns.Config{
			Addr: in.mqttAddr(), PID: in.cmd.Process.Pid, MetricsURL: in.url("/metrics"), MetricsToken: in.token,
			Conns: n, Mode: idleconns.Idle,
		})
		if fleet != nil {
			fleet.Close()
		}
		h.finish(in)
		if err != nil {
			return out, fmt.Errorf("idle connections: %w", err)
		}
		out = append(out, Idle{Conns: n, RSSBefore: res.Before.RSS, RSSAfter: res.After.RSS,
			RSSPerConn: res.RSSPerConn(), HeapPerConn: res.HeapPerConn(),
			GoroutinesPerConn: res.GoroutinesPerConn(), ConnectRate: res.ConnectRate()})
		fmt.Fprintf(h.cfg.Log, "    %.1f KB of RSS per connection, %.0f connects/s\n", res.RSSPerConn()/1024, res.ConnectRate())
	}
	return out, nil
}
