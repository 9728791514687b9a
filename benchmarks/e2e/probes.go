package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotpipe/iotpipe/benchmarks/mqttload"
)

// Probes measure latency the way an event sees it, without stamping the
// raw load: a few devices ("probe-N") publish a stamped point each
// ProbeInterval to bench/probe-N/telemetry, through the same partitions
// and rules as the load. An even point is hot (35.5: alert_hot's webhook
// fires), an odd one cold (15.0: alert_cold republishes it). The harness
// notes when each probe point becomes a ClickHouse row (polling), reaches
// its webhook receiver and arrives republished.

// The paths a probe point's latency is measured along.
const (
	pathRow       = "row"       // publish → telemetry row readable in ClickHouse
	pathWebhook   = "webhook"   // publish → the webhook action's request
	pathRepublish = "republish" // publish → the republish action's message
)

// observation is one probe point seen at the end of one path.
type observation struct {
	path    string
	pub     time.Time // the probe's publish time (its "ts")
	latency time.Duration
}

// probes runs the probe devices and the three observers.
type probes struct {
	cfg     *Config
	in      *instance
	mu      sync.Mutex
	obs     []observation
	acked   map[string]int64 // probe id -> points acknowledged
	seen    map[string]map[int64]bool
	webhook *http.Server
	hookURL string
	hooks   int64 // webhook requests received (all rules' firings)
	clients []paho.Client
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	// pollEvery is the mean time between two ClickHouse polls: the row
	// latencies' resolution.
	polls     int
	pollSince time.Time
}

// startReceiver starts the webhook receiver before the instance exists
// (the rules name its address).
func startReceiver(cfg *Config) (*probes, error) {
	p := &probes{cfg: cfg, acked: map[string]int64{}, seen: map[string]map[int64]bool{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("webhook receiver: %w", err)
	}
	p.hookURL = "http://" + l.Addr().String()
	p.webhook = &http.Server{Handler: http.HandlerFunc(p.serveHook), ReadHeaderTimeout: 10 * time.Second}
	go p.webhook.Serve(l)
	return p, nil
}

func (p *probes) serveHook(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	now := time.Now()
	w.WriteHeader(http.StatusOK)
	p.mu.Lock()
	p.hooks++
	p.mu.Unlock()
	p.observe(pathWebhook, b, now)
}

// observe notes a probe point (a JSON object with device and ts) seen at
// the end of a path; other payloads are the load's and are ignored.
func (p *probes) observe(path string, payload []byte, at time.Time) {
	var m struct {
		Device string  `json:"device"`
		TS     float64 `json:"ts"`
	}
	if json.Unmarshal(payload, &m) != nil || !strings.HasPrefix(m.Device, "probe-") || m.TS == 0 {
		return
	}
	pub := time.UnixMilli(int64(m.TS))
	p.mu.Lock()
	p.obs = append(p.obs, observation{path: path, pub: pub, latency: at.Sub(pub)})
	p.mu.Unlock()
}

// start connects the probe devices and the republish subscriber to the
// instance and starts publishing and polling.
func (p *probes) start(ctx context.Context, in *instance) error {
	p.in = in
	ctx, p.cancel = context.WithCancel(ctx)
	opts := func(id string) *paho.ClientOptions {
		return paho.NewClientOptions().AddBroker("tcp://" + in.mqttAddr()).SetClientID(id).
			SetAutoReconnect(false).SetOrderMatters(false).SetKeepAlive(30 * time.Second)
	}
	sub := paho.NewClient(opts("probe-watch"))
	if tok := sub.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return fmt.Errorf("republish subscriber: %v", tok.Error())
	}
	p.clients = append(p.clients, sub)
	tok := sub.Subscribe("alerts/+/cold", 0, func(_ paho.Client, m paho.Message) {
		p.observe(pathRepublish, m.Payload(), time.Now())
	})
	if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		return fmt.Errorf("republish subscriber: %v", tok.Error())
	}
	for i := range p.cfg.Probes {
		id := fmt.Sprintf("probe-%d", i)
		c := paho.NewClient(opts(id))
		if tok := c.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
			return fmt.Errorf("probe %s: %v", id, tok.Error())
		}
		p.clients = append(p.clients, c)
		p.seen[id] = map[int64]bool{}
		p.wg.Add(1)
		go p.publish(ctx, c, id, time.Duration(i)*p.cfg.ProbeInterval/time.Duration(p.cfg.Probes))
	}
	if in.role == "run" {
		p.wg.Add(1)
		go p.poll(ctx)
	}
	return nil
}

// publish sends probe points until ctx ends; seq numbers this probe's
// points from 0 over the instance's life.
func (p *probes) publish(ctx context.Context, c paho.Client, id string, offset time.Duration) {
	defer p.wg.Done()
	time.Sleep(offset)
	t := time.NewTicker(p.cfg.ProbeInterval)
	defer t.Stop()
	var pending []paho.Token
	for seq := int64(0); ; seq++ {
		select {
		case <-ctx.Done():
			for _, tok := range pending {
				if tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
					p.mu.Lock()
					p.acked[id]++
					p.mu.Unlock()
				}
			}
			return
		case <-t.C:
		}
		temp := "35.5"
		if seq%2 == 1 {
			temp = "15.0"
		}
		payload := fmt.Sprintf(`{"temperature":%s,"seq":%d,"conn":-1,"ts":%d,"device":%q}`, temp, seq, time.Now().UnixMilli(), id)
		pending = append(pending, c.Publish("bench/"+id+"/telemetry", 1, false, payload))
		for len(pending) > 0 && pending[0].WaitTimeout(0) {
			if pending[0].Error() == nil {
				p.mu.Lock()
				p.acked[id]++
				p.mu.Unlock()
			}
			pending = pending[1:]
		}
	}
}

// poll looks for new probe rows in ClickHouse every PollInterval; a row's
// latency is the time the query that first returned it completed.
func (p *probes) poll(ctx context.Context) {
	defer p.wg.Done()
	p.pollSince = time.Now()
	for ctx.Err() == nil {
		start := time.Now()
		out, err := p.in.query(ctx, "SELECT thing, toInt64(metrics['seq']), toInt64(metrics['ts']) FROM telemetry "+
			"WHERE thing LIKE 'probe-%' AND received_at >= now64(3) - INTERVAL 120 SECOND FORMAT TSV")
		now := time.Now()
		if err == nil {
			p.mu.Lock()
			p.polls++
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Split(line, "\t")
				if len(f) != 3 {
					continue
				}
				seq, err1 := strconv.ParseInt(f[1], 10, 64)
				ts, err2 := strconv.ParseInt(f[2], 10, 64)
				if err1 != nil || err2 != nil || p.seen[f[0]] == nil || p.seen[f[0]][seq] {
					continue
				}
				p.seen[f[0]][seq] = true
				pub := time.UnixMilli(ts)
				p.obs = append(p.obs, observation{path: pathRow, pub: pub, latency: now.Sub(pub)})
			}
			p.mu.Unlock()
		}
		if wait := p.cfg.PollInterval - time.Since(start); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}
}

// stop ends the probes; the receiver keeps serving until close.
func (p *probes) stop() {
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait()
	for _, c := range p.clients {
		c.Disconnect(250)
	}
	p.clients = nil
}

func (p *probes) close() {
	p.stop()
	p.webhook.Close()
}

// pollPeriod is the mean time between two ClickHouse polls so far.
func (p *probes) pollPeriod() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.polls == 0 {
		return 0
	}
	return time.Since(p.pollSince) / time.Duration(p.polls)
}

// latencies summarises the probe points published in [a, b] per path.
func (p *probes) latencies(a, b time.Time) map[string]Latency {
	p.mu.Lock()
	defer p.mu.Unlock()
	hs := map[string]*mqttload.Histogram{}
	for _, o := range p.obs {
		if o.pub.Before(a) || o.pub.After(b) {
			continue
		}
		h := hs[o.path]
		if h == nil {
			h = new(mqttload.Histogram)
			hs[o.path] = h
		}
		h.Record(o.latency)
	}
	out := map[string]Latency{}
	for path, h := range hs {
		out[path] = latencyOf(h)
	}
	return out
}

// cdf returns the latency at each of the quantiles for the probe points
// published in [a, b] on one path.
func (p *probes) cdf(path string, a, b time.Time, qs []float64) []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var h mqttload.Histogram
	for _, o := range p.obs {
		if o.path == path && !o.pub.Before(a) && !o.pub.After(b) {
			h.Record(o.latency)
		}
	}
	if h.Count() == 0 {
		return nil
	}
	out := make([]time.Duration, len(qs))
	for i, q := range qs {
		out[i] = h.Quantile(q)
	}
	return out
}

// Latency is a latency distribution's summary.
type Latency struct {
	Count uint64        `json:"count"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
}

func latencyOf(h *mqttload.Histogram) Latency {
	s := h.Summary()
	return Latency{Count: s.Count, P50: s.P50, P90: s.P90, P99: s.P99, Max: s.Max}
}
