package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/iotpipe/iotpipe/devices/fleet"
	"github.com/iotpipe/iotpipe/devices/profile"
)

const simulateUsage = `Usage: iotpipe simulate [flags]

Run a fleet of simulated devices against an MQTT broker (iotpipe or any
other): one real MQTT 3.1.1 client per device, sending a profile's
telemetry at a fixed total rate, with injected anomalies, device shadow
traffic, clean and abrupt disconnects (with a Last Will) and reconnects
with backoff.

Profiles (--profile): the built-in greenhouse, fridge and wind, or a YAML
file of your own (iotpipe simulate --print-profile wind shows the format,
with comments). Each device sends
  {"device":"wind-0007","seq":42,"ts":<Unix ms>,"wind_speed":8.12,...}
to the profile's topic (wind/{device}/telemetry); seq numbers a device's
points, ts is when it was published.

What a device sends is decided by --seed, the device's index and the
point's number, never by the clock or --rate: the same seed gives the same
values, anomalies, disconnects and shadow requests.

Anomalies: a share of points (the profile's anomalies.share, or
--anomaly-share) carry a spike, a level shift or a stuck value. --truth
FILE writes one JSON line per anomalous point once its publish settled:
  {"device":"wind-0007","seq":812,"time":"...","ts":...,"kind":"spike",
   "metric":"wind_speed","value":14.2,"expected":8.1,"episode":3,"index":0,"acked":true}

Shadows: devices report state to $aws/things/{device}/shadow/update, and
answer each delta on .../update/delta by reporting the delta's state; an
operator client ({prefix}operator) sets desired values now and then.
Disconnects: per point, with the profile's probabilities; an abrupt one
closes the TCP connection without DISCONNECT, so the broker publishes the
device's Will on {profile}/{device}/status. A device stays away for the
profile's offline period, then reconnects with exponential backoff.

TLS: --tls-ca and --cert-dir (DIR/{device}.crt and .key) connect over TLS
with a client certificate per device; iotpipe's identity will register
them.

Examples:
  iotpipe simulate --devices 100 --rate 1000/s --duration 1m --profile greenhouse
  iotpipe simulate --profile wind --devices 200 --rate 2000 --seed 7 --truth truth.jsonl
  iotpipe simulate --profile my-pumps.yaml --devices 10 --rate 10 --duration 10m --no-disconnects

Exit status: 0 when every publish was acknowledged or dropped on purpose,
1 when publishes failed or the fleet could not connect, 2 on bad usage.

Flags:
`

// simulateMain runs `iotpipe simulate`.
func simulateMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("iotpipe simulate", flag.ContinueOnError)
	var (
		cfg               fleet.Config
		profileName, rate string
		qos               uint
		truthPath         string
		share             float64
		kinds             string
		printProfile      string
		listProfiles      bool
		asJSON, quiet     bool
		progress          bool
		tlsCA, certDir    string
	)
	fs.StringVar(&cfg.Addr, "addr", fleet.DefaultAddr, "broker `host:port`")
	fs.IntVar(&cfg.Devices, "devices", 10, "number of devices")
	fs.IntVar(&cfg.FirstDevice, "first-device", 0, "index of the first device (to run several simulators side by side)")
	fs.StringVar(&rate, "rate", "100/s", "telemetry points per second, the whole fleet (`R` or R/s)")
	fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long the devices send")
	fs.StringVar(&profileName, "profile", "greenhouse", "built-in profile ("+strings.Join(profile.Builtin(), ", ")+") or a YAML `file`")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed: the same seed sends the same values")
	fs.UintVar(&qos, "qos", 1, "QoS of telemetry and shadow publishes, 0 or 1")
	fs.IntVar(&cfg.Window, "window", fleet.DefaultWindow, "unacknowledged publishes per device")
	fs.StringVar(&truthPath, "truth", "", "write the ground truth of injected anomalies to this JSONL `file`")
	fs.Float64Var(&share, "anomaly-share", -1, "share of points with an anomaly, 0 to 0.5 (default: the profile's)")
	fs.StringVar(&kinds, "anomaly-kinds", "", "only these anomaly kinds, comma-separated: spike, level_shift, stuck (default: the profile's)")
	fs.BoolVar(&cfg.NoShadows, "no-shadows", false, "no shadow traffic")
	fs.BoolVar(&cfg.NoDisconnects, "no-disconnects", false, "devices never disconnect")
	fs.StringVar(&cfg.Username, "username", "", "MQTT user name (none by default)")
	fs.StringVar(&cfg.Password, "password", "", "MQTT password, sent only with --username")
	fs.StringVar(&tlsCA, "tls-ca", "", "connect over TLS, trusting the server certificate's CA in this PEM `file`")
	fs.StringVar(&certDir, "cert-dir", "", "with TLS: client certificates `DIR`/{device}.crt and .key")
	fs.StringVar(&printProfile, "print-profile", "", "print a built-in profile's YAML and exit")
	fs.BoolVar(&listProfiles, "list-profiles", false, "list the built-in profiles and exit")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	fs.BoolVar(&quiet, "quiet", false, "no progress on stderr")
	fs.BoolVar(&progress, "progress", false, "progress on stderr even when it is not a terminal")
	if code, done := parseFlagsOnly(fs, args, "simulate", simulateUsage, stdout, stderr); done {
		return code
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "iotpipe simulate: "+format+"\n", a...)
		return 2
	}
	if listProfiles {
		for _, n := range profile.Builtin() {
			p, err := profile.Load(n)
			if err != nil {
				fmt.Fprintln(stderr, err)
				return 1
			}
			fmt.Fprintf(stdout, "%-12s %s\n", n, p.Description)
		}
		return 0
	}
	if printProfile != "" {
		b, err := profile.BuiltinSource(printProfile)
		if err != nil {
			return usageErr("%v", err)
		}
		stdout.Write(b)
		return 0
	}
	r, err := parseRate(rate)
	if err != nil {
		return usageErr("--rate: %v", err)
	}
	cfg.Rate = r
	if qos > 1 {
		return usageErr("--qos must be 0 or 1")
	}
	cfg.QoS = byte(qos)
	p, err := profile.Load(profileName)
	if err != nil {
		return usageErr("--profile: %v", err)
	}
	if err := overrideAnomalies(p, share, kinds); err != nil {
		return usageErr("%v", err)
	}
	cfg.Profile = p
	if tlsCA != "" || certDir != "" {
		hook, err := tlsHook(tlsCA, certDir)
		if err != nil {
			return usageErr("%v", err)
		}
		cfg.TLS = hook
	}
	if truthPath != "" {
		f, err := os.Create(truthPath)
		if err != nil {
			fmt.Fprintf(stderr, "iotpipe simulate: %v\n", err)
			return 1
		}
		defer f.Close()
		cfg.Truth = f
	}
	if !quiet && (progress || isTerminal(stderr)) {
		cfg.Progress = func(s fleet.Stats) { fmt.Fprintln(stderr, formatFleetProgress(s)) }
	}
	rep, err := fleet.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "iotpipe simulate: %v\n", err)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
	} else {
		fmt.Fprint(stdout, formatFleetReport(rep, truthPath))
	}
	if rep.Failed > 0 || rep.Errors > 0 {
		return 1
	}
	return 0
}

// parseRate reads "500", "500/s" or "2.5k/s".
func parseRate(s string) (float64, error) {
	s = strings.TrimSuffix(strings.TrimSpace(s), "/s")
	mult := 1.0
	if strings.HasSuffix(s, "k") {
		s, mult = strings.TrimSuffix(s, "k"), 1000
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v > 0) {
		return 0, fmt.Errorf("%q is not a positive rate (e.g. 500/s)", s)
	}
	return v * mult, nil
}

// overrideAnomalies applies --anomaly-share and --anomaly-kinds to p
// and checks the result.
func overrideAnomalies(p *profile.Profile, share float64, kinds string) error {
	if share < 0 && kinds == "" {
		return nil
	}
	a := &p.Anomalies
	if share >= 0 {
		a.Share = share
	}
	if kinds != "" {
		keep := strings.Split(kinds, ",")
		for _, k := range keep {
			if !slices.Contains(profile.Kinds, profile.Kind(strings.TrimSpace(k))) {
				return fmt.Errorf("--anomaly-kinds: unknown kind %q (spike, level_shift, stuck)", k)
			}
		}
		for _, k := range []struct {
			kind profile.Kind
			c    *profile.KindConfig
		}{{profile.Spike, &a.Spike}, {profile.LevelShift, &a.LevelShift}, {profile.Stuck, &a.Stuck}} {
			if !slices.Contains(keep, string(k.kind)) {
				k.c.Weight = 0
			}
		}
	}
	if err := p.Recheck(); err != nil {
		return fmt.Errorf("profile %s with the anomaly flags: %w", p.Name, err)
	}
	return nil
}

// tlsHook gives each device a TLS configuration: the CA that signed the
// server's certificate and, with a certificate directory, the device's
// own certificate.
func tlsHook(caFile, certDir string) (func(string) (*tls.Config, error), error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-ca: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--tls-ca: no PEM certificate in %s", caFile)
		}
	}
	return func(device string) (*tls.Config, error) {
		c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		if certDir != "" {
			cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, device+".crt"), filepath.Join(certDir, device+".key"))
			if err != nil {
				return nil, fmt.Errorf("certificate of %s: %w", device, err)
			}
			c.Certificates = []tls.Certificate{cert}
		}
		return c, nil
	}, nil
}

func formatFleetProgress(s fleet.Stats) string {
	rate := 0.0
	if sec := s.Elapsed.Seconds(); sec > 0 {
		rate = float64(s.Acked) / sec
	}
	line := fmt.Sprintf("%6.1fs connected %d  sent %d  acked %d (%.0f/s)  anomalies %d  shadow %d+%d  disconnects %d/%d",
		s.Elapsed.Seconds(), s.Connected, s.Sent, s.Acked, rate, s.Episodes, s.ShadowReports, s.DeltaReports,
		s.CleanDisconnects, s.AbruptDisconnects)
	if s.Errors > 0 {
		line += fmt.Sprintf("  ERRORS %d", s.Errors)
	}
	return line
}

func formatFleetReport(r fleet.Report, truth string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "fleet: %d %s devices, seed %d, QoS %d, target %.0f points/s\n", r.Devices, r.Profile, r.Seed, r.QoS, r.Target)
	fmt.Fprintf(&b, "  connected   in %s\n", r.ConnectTime.Round(time.Millisecond))
	fmt.Fprintf(&b, "  sent        %d points in %s (then %s to settle)", r.Sent, r.Sending.Round(time.Millisecond),
		(r.Elapsed - r.Sending).Round(time.Millisecond))
	if r.Interrupted {
		b.WriteString(" (interrupted)")
	}
	fmt.Fprintf(&b, "\n  acked       %d (%.1f/s achieved)\n", r.Acked, r.AckedPerSec)
	fmt.Fprintf(&b, "  not acked   %d failed, %d dropped with an abrupt disconnect (by design), %d unsettled at the end\n",
		r.Failed, r.Dropped, r.Unsettled)
	fmt.Fprintf(&b, "  injected    %d anomalies (acked points: %d spike, %d level_shift, %d stuck)",
		r.Episodes, r.Anomalies[profile.Spike], r.Anomalies[profile.LevelShift], r.Anomalies[profile.Stuck])
	if truth != "" {
		fmt.Fprintf(&b, "; ground truth in %s", truth)
	}
	fmt.Fprintf(&b, "\n  shadows     %d reports, %d desired set, %d deltas received, %d answered\n",
		r.ShadowReports, r.DesiredSet, r.Deltas, r.DeltaReports)
	fmt.Fprintf(&b, "  connections %d clean and %d abrupt disconnects, %d reconnects, %d failed attempts, %d lost\n",
		r.CleanDisconnects, r.AbruptDisconnects, r.Reconnects, r.ConnectFailures, r.Lost)
	fmt.Fprintf(&b, "  errors      %d\n", r.Errors)
	for _, e := range r.ErrorSamples {
		fmt.Fprintf(&b, "    %s\n", e)
	}
	return b.String()
}
