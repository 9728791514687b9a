package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/replay"
	"github.com/iotpipe/iotpipe/replay/tomqtt"
)

// mqttTarget is where iotpipe replay --to-mqtt re-publishes.
type mqttTarget struct {
	prefix, speed, addr, user, pass, ca, cert, key string
}

func (m *mqttTarget) bind(fs *flag.FlagSet) {
	fs.StringVar(&m.prefix, "to-mqtt", "", "re-publish the selected events over MQTT under this topic prefix")
	fs.StringVar(&m.speed, "speed", "1", "--to-mqtt: 1, 10, ... or max")
	fs.StringVar(&m.addr, "mqtt", sqlEnvOr("IOTPIPE_MQTT", tomqtt.DefaultAddr), "--to-mqtt: the broker's host:port")
	fs.StringVar(&m.user, "mqtt-username", "", "--to-mqtt: MQTT user name")
	fs.StringVar(&m.pass, "mqtt-password", os.Getenv("IOTPIPE_MQTT_PASSWORD"), "--to-mqtt: MQTT password")
	fs.StringVar(&m.ca, "tls-ca", "", "--to-mqtt: connect over TLS trusting this CA")
	fs.StringVar(&m.cert, "cert", "", "--to-mqtt: client certificate")
	fs.StringVar(&m.key, "key", "", "--to-mqtt: client certificate's key")
}

// check refuses the flags --to-mqtt does not go with, and bad values.
func (m *mqttTarget) check(diff, trace bool, rules pathsFlag, pos []string, export string) error {
	switch {
	case diff || trace || len(rules)+len(pos) > 0 || export != "":
		return errors.New("--to-mqtt re-publishes events, it runs no rules: leave out --rules, --diff, --trace and --export")
	case (m.cert == "") != (m.key == ""):
		return errors.New("--cert and --key go together")
	case m.cert != "" && m.ca == "":
		return errors.New("--cert is for TLS: give --tls-ca too")
	}
	if _, err := m.speedValue(); err != nil {
		return err
	}
	return tomqtt.CheckPrefix(m.prefix)
}

// speedValue is --speed as tomqtt takes it (0: max).
func (m *mqttTarget) speedValue() (float64, error) {
	if m.speed == "max" {
		return 0, nil
	}
	v, err := strconv.ParseFloat(m.speed, 64)
	if err != nil || v <= 0 || v > 1e6 {
		return 0, fmt.Errorf("--speed %q: want a positive number (1 keeps the spacing, 10 is ten times faster) or max", m.speed)
	}
	return v, nil
}

func (m *mqttTarget) tls() (*tls.Config, error) {
	if m.ca == "" {
		return nil, nil
	}
	c, err := pki.ClientTLS(m.ca, m.cert, m.key)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca, --cert, --key: %w", err)
	}
	return c, nil
}

// replayToMQTT re-publishes the selected events (iotpipe replay
// --to-mqtt).
func replayToMQTT(ctx context.Context, ls *logSelection, sel replay.Selection, m *mqttTarget, stderr io.Writer) int {
	speed, _ := m.speedValue()
	tc, err := m.tls()
	if err != nil {
		fmt.Fprintln(stderr, "iotpipe replay:", err)
		return 2
	}
	log, plan, err := ls.plan(ctx, sel)
	if err != nil {
		fmt.Fprintln(stderr, "iotpipe replay:", err)
		return 1
	}
	pub, err := tomqtt.New(ctx, tomqtt.Options{Addr: m.addr, TLS: tc, Username: m.user, Password: m.pass, Prefix: m.prefix, Speed: speed})
	if err != nil {
		fmt.Fprintln(stderr, "iotpipe replay:", err)
		return 1
	}
	var read replay.Counter
	stop := progress(stderr, "replay --to-mqtt", sel, plan, &read)
	err = replay.Read(ctx, log, sel, plan, &read, func(ev *replay.Event) error { return pub.Add(ctx, ev) })
	stop()
	st, perr := pub.Close()
	fmt.Fprintf(stderr, "replay --to-mqtt: %d published to %s/..., %d failed, %d skipped (not device publishes); %s of history in %s\n",
		st.Published, m.prefix, st.Failed, st.Skipped, st.Span.Round(time.Millisecond), st.Took.Round(time.Millisecond))
	return finish(stderr, "iotpipe replay", errors.Join(err, perr), ctx)
}
