// Package fleet runs a simulated fleet of devices: one real MQTT client
// (paho, MQTT 3.1.1) per device, sending the telemetry of a profile at a
// fixed total rate, with injected anomalies, device shadow traffic,
// clean and abrupt disconnects (with a Last Will) and reconnects with
// backoff. What a device sends is decided by the seed, never by the wall
// clock (see package profile); when it is sent is the rate's.
package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotpipe/iotpipe/devices/profile"
)

// Defaults for Config fields left at their zero value.
const (
	DefaultAddr             = "127.0.0.1:1883"
	DefaultWindow           = 16
	DefaultConnectParallel  = 32
	DefaultDrain            = 10 * time.Second
	DefaultProgressInterval = time.Second
)

// Config describes one simulation run.
type Config struct {
	// Addr is the broker's host:port. Default DefaultAddr.
	Addr string
	// Profile is the kind of device. Required.
	Profile *profile.Profile
	// Devices is the number of devices. Required.
	Devices int
	// FirstDevice is the index of the first device, so that several
	// fleets of one profile use different device ids.
	FirstDevice int
	// Rate is the total number of telemetry points per second across the
	// fleet; each device sends every Devices/Rate seconds, the devices
	// evenly staggered. A device that falls behind catches up without
	// skipping points. Required.
	Rate float64
	// Duration is how long the devices send. Required.
	Duration time.Duration
	// Seed makes the run reproducible.
	Seed uint64
	// QoS of telemetry and shadow publishes, 0 or 1.
	QoS byte
	// Window bounds each device's unacknowledged QoS 1 publishes.
	// Default DefaultWindow.
	Window int
	// ConnectParallel bounds the connections being set up at once.
	// Default DefaultConnectParallel.
	ConnectParallel int
	// Drain bounds the wait for outstanding acknowledgements at the end.
	// Default DefaultDrain.
	Drain time.Duration
	// NoShadows turns the profile's shadow traffic off; NoDisconnects
	// its disconnects.
	NoShadows, NoDisconnects bool
	// Username and Password are sent in CONNECT when Username is set.
	Username, Password string
	// TLS, when set, is asked for each device's TLS configuration (its
	// client certificate, the server's CA); nil is plain TCP. This is
	// the hook for certificates registered by iotpipe's identity.
	TLS func(device string) (*tls.Config, error)
	// Truth, when set, receives one JSON line per anomalous telemetry
	// point once its publish is settled (see TruthRecord).
	Truth io.Writer
	// OnPublish, when set, is called for every telemetry publish once it
	// is acknowledged or failed (QoS 0: once written), from many
	// goroutines.
	OnPublish func(Outcome)
	// Progress, when set, is called every ProgressInterval with the
	// counts so far.
	Progress func(Stats)
	// ProgressInterval defaults to DefaultProgressInterval.
	ProgressInterval time.Duration
	// Logger receives connection problems at debug level. Default: none.
	Logger *slog.Logger
}

// Outcome is the fate of one telemetry publish.
type Outcome struct {
	Device string
	Point  *profile.Point
	// Sent is when the publish was handed to the client; Done when it
	// was acknowledged or failed.
	Sent, Done time.Time
	// Acked is true once the broker acknowledged it (QoS 0: written).
	Acked bool
	// Err is why it failed; ErrDropped when the device itself dropped
	// the connection abruptly while it was in flight.
	Err error
}

// ErrDropped is the error of a publish in flight when its device closed
// its connection abruptly (by design: it may or may not have been
// logged, and is never sent again).
var ErrDropped = errors.New("in flight when the device dropped its connection")

// Stats are a run's counts.
type Stats struct {
	Elapsed time.Duration `json:"elapsed_ns"`
	// Connected is the number of devices connected now.
	Connected int `json:"connected"`
	// Sent, Acked and Failed count telemetry publishes; Dropped those
	// in flight when their device dropped its connection on purpose
	// (not errors), and Unsettled those neither acknowledged nor failed
	// when the run ended.
	Sent      uint64 `json:"sent"`
	Acked     uint64 `json:"acked"`
	Failed    uint64 `json:"failed"`
	Dropped   uint64 `json:"dropped"`
	Unsettled uint64 `json:"unsettled"`
	// Anomalies counts acknowledged anomalous points by kind; Episodes
	// the anomaly episodes started.
	Anomalies map[profile.Kind]uint64 `json:"anomalies"`
	Episodes  uint64                  `json:"episodes"`
	// Shadow traffic: reports sent (periodic and in answer to a delta),
	// desired states the operator set, deltas the devices received.
	ShadowReports uint64 `json:"shadow_reports"`
	DeltaReports  uint64 `json:"delta_reports"`
	DesiredSet    uint64 `json:"desired_set"`
	Deltas        uint64 `json:"deltas"`
	// Connections: disconnects by kind, reconnects that succeeded,
	// connection attempts that failed, connections lost unexpectedly.
	CleanDisconnects  uint64 `json:"clean_disconnects"`
	AbruptDisconnects uint64 `json:"abrupt_disconnects"`
	Reconnects        uint64 `json:"reconnects"`
	ConnectFailures   uint64 `json:"connect_failures"`
	Lost              uint64 `json:"lost"`
	// Errors counts failures other than planned drops; ErrorSamples
	// holds up to five distinct messages.
	Errors       uint64   `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`
}

// Report is the outcome of a run.
type Report struct {
	Stats
	Profile string  `json:"profile"`
	Devices int     `json:"devices"`
	Seed    uint64  `json:"seed"`
	QoS     byte    `json:"qos"`
	Target  float64 `json:"target_rate"`
	// AckedPerSec is the acknowledged telemetry over the sending time.
	AckedPerSec float64 `json:"acked_per_sec"`
	// Sending is how long the devices sent (Elapsed adds the time
	// taken to settle what was in flight).
	Sending time.Duration `json:"sending_ns"`
	// ConnectTime is how long connecting the whole fleet took.
	ConnectTime time.Duration `json:"connect_ns"`
	Interrupted bool          `json:"interrupted,omitempty"`
}

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.ConnectParallel == 0 {
		c.ConnectParallel = DefaultConnectParallel
	}
	if c.Drain == 0 {
		c.Drain = DefaultDrain
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = DefaultProgressInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.Profile == nil {
		errs = append(errs, errors.New("a profile is required"))
	}
	if c.Devices < 1 || c.Devices > 1_000_000 {
		errs = append(errs, fmt.Errorf("devices must be between 1 and 1000000, got %d", c.Devices))
	}
	if c.FirstDevice < 0 {
		errs = append(errs, errors.New("the first device index must not be negative"))
	}
	if !(c.Rate > 0) || math.IsInf(c.Rate, 0) {
		errs = append(errs, fmt.Errorf("rate must be a positive number of points per second, got %v", c.Rate))
	}
	if c.Duration <= 0 {
		errs = append(errs, errors.New("duration must be positive"))
	}
	if c.QoS > 1 {
		errs = append(errs, fmt.Errorf("qos must be 0 or 1, got %d", c.QoS))
	}
	if c.Window < 1 || c.Window > 1000 || c.ConnectParallel < 1 {
		errs = append(errs, errors.New("window must be between 1 and 1000 and connect parallelism at least 1"))
	}
	if strings.Contains(c.Addr, "://") {
		errs = append(errs, fmt.Errorf("addr %q: give host:port (TLS comes from the TLS hook)", c.Addr))
	}
	return errors.Join(errs...)
}

// fleet is the state of one run shared by its devices.
type fleet struct {
	cfg    Config
	p      *profile.Profile
	t0     time.Time // when sending starts
	end    time.Time
	every  time.Duration // between two points of one device
	truth  *truthWriter
	op     *operator
	stats  counters
	online atomic.Int64
	errMu  sync.Mutex
	errs   []string
}

// Run connects the fleet, sends for cfg.Duration, waits for outstanding
// acknowledgements (at most cfg.Drain) and disconnects. It returns an
// error when the configuration is invalid or no device could connect;
// problems after that are counted in the report. Cancelling ctx ends the
// run early (Report.Interrupted).
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Report{}, fmt.Errorf("invalid fleet configuration: %w", err)
	}
	f := &fleet{cfg: cfg, p: cfg.Profile}
	f.every = time.Duration(float64(time.Second) * float64(cfg.Devices) / cfg.Rate)
	if cfg.Truth != nil {
		f.truth = newTruthWriter(cfg.Truth)
	}
	rep := Report{Profile: f.p.Name, Devices: cfg.Devices, Seed: cfg.Seed, QoS: cfg.QoS, Target: cfg.Rate}

	start := time.Now()
	devs := make([]*device, cfg.Devices)
	for i := range devs {
		devs[i] = f.newDevice(cfg.FirstDevice + i)
	}
	if err := f.connectAll(ctx, devs); err != nil {
		return rep, err
	}
	if !cfg.NoShadows && f.p.Shadow.DesiredEvery > 0 {
		op, err := f.newOperator(ctx)
		if err != nil {
			for _, d := range devs {
				d.finish()
			}
			return rep, err
		}
		f.op = op
		defer op.close()
	}
	rep.ConnectTime = time.Since(start)

	f.t0 = time.Now()
	f.end = f.t0.Add(cfg.Duration)
	sendCtx, cancel := context.WithDeadline(ctx, f.end)
	defer cancel()
	stopProgress := f.startProgress()
	var wg sync.WaitGroup
	for i, d := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.run(sendCtx, ctx, f.t0.Add(time.Duration(float64(f.every)*float64(i)/float64(cfg.Devices))))
		}()
	}
	wg.Wait()
	stopProgress()
	rep.Interrupted = ctx.Err() != nil
	rep.Stats = f.snapshot()
	rep.Sending = min(rep.Elapsed, cfg.Duration)
	if s := rep.Sending.Seconds(); s > 0 {
		rep.AckedPerSec = float64(rep.Acked) / s
	}
	if f.truth != nil {
		if err := f.truth.flush(); err != nil {
			return rep, fmt.Errorf("write the ground truth: %w", err)
		}
	}
	return rep, nil
}

// connectAll connects every device, ConnectParallel at a time. A device
// that cannot connect retries with backoff when it runs; only when none
// connects is it an error.
func (f *fleet) connectAll(ctx context.Context, devs []*device) error {
	sem := make(chan struct{}, f.cfg.ConnectParallel)
	var wg sync.WaitGroup
	var ok atomic.Int64
	var firstErr error
	var once sync.Once
	for _, d := range devs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := d.connect(ctx); err != nil {
				f.stats.connectFailures.Add(1)
				once.Do(func() { firstErr = err })
				return
			}
			ok.Add(1)
		}()
	}
	wg.Wait()
	if ok.Load() == 0 {
		return fmt.Errorf("no device could connect to %s: %w", f.cfg.Addr, firstErr)
	}
	return nil
}

// noteError counts an unexpected failure and keeps a few messages.
func (f *fleet) noteError(err error) {
	f.stats.errors.Add(1)
	f.errMu.Lock()
	defer f.errMu.Unlock()
	msg := err.Error()
	if len(f.errs) < 5 && !slices.Contains(f.errs, msg) {
		f.errs = append(f.errs, msg)
	}
}

// counters are the run's counts, updated by the devices.
type counters struct {
	sent, acked, failed, dropped, unsettled         atomic.Uint64
	anomalies                                       [3]atomic.Uint64
	episodes                                        atomic.Uint64
	shadowReports, deltaReports, desiredSet, deltas atomic.Uint64
	clean, abrupt, reconnects, connectFailures      atomic.Uint64
	lost, errors                                    atomic.Uint64
}

func (f *fleet) snapshot() Stats {
	c := &f.stats
	s := Stats{
		Connected: int(f.online.Load()),
		Sent:      c.sent.Load(), Acked: c.acked.Load(), Failed: c.failed.Load(),
		Dropped: c.dropped.Load(), Unsettled: c.unsettled.Load(),
		Anomalies:     map[profile.Kind]uint64{},
		Episodes:      c.episodes.Load(),
		ShadowReports: c.shadowReports.Load(), DeltaReports: c.deltaReports.Load(),
		DesiredSet: c.desiredSet.Load(), Deltas: c.deltas.Load(),
		CleanDisconnects: c.clean.Load(), AbruptDisconnects: c.abrupt.Load(),
		Reconnects: c.reconnects.Load(), ConnectFailures: c.connectFailures.Load(),
		Lost: c.lost.Load(), Errors: c.errors.Load(),
	}
	if !f.t0.IsZero() {
		s.Elapsed = time.Since(f.t0)
	}
	for i, k := range profile.Kinds {
		s.Anomalies[k] = c.anomalies[i].Load()
	}
	f.errMu.Lock()
	s.ErrorSamples = append([]string(nil), f.errs...)
	f.errMu.Unlock()
	return s
}

func (f *fleet) startProgress() (stop func()) {
	if f.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(f.cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f.cfg.Progress(f.snapshot())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// clientOptions are the paho options every client of the fleet shares.
func (f *fleet) clientOptions(id string, keepalive time.Duration) *paho.ClientOptions {
	o := paho.NewClientOptions().AddBroker("tcp://" + f.cfg.Addr).SetClientID(id).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetKeepAlive(keepalive).SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).SetOrderMatters(false)
	if f.cfg.Username != "" {
		o.SetUsername(f.cfg.Username).SetPassword(f.cfg.Password)
	}
	return o
}
