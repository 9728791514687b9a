package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"github.com/iotpipe/iotpipe/ingest"
	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/ingest/policy"
	"github.com/iotpipe/iotpipe/ingest/registry"
)

// listenerNames names each MQTT listener and its flag in listen errors.
var listenerNames = map[string][2]string{
	"tcp": {"MQTT", "--mqtt-addr"},
	"tls": {"MQTT over TLS", "--mqtts-addr"},
	"ws":  {"MQTT over WebSocket", "--ws-addr"},
	"wss": {"MQTT over secure WebSocket", "--wss-addr"},
}

// identityOptions fills the ingest options of identity: the listeners
// (plain ones only with --dev or --mqtt-token-auth), the TLS listeners'
// certificate (--tls-cert/--tls-key, or one iotpipe's CA under
// <data-dir>/pki issues), the registry (running, and ready before the
// front accepts connections) and the custom authorizer.
func (n *node) identityOptions(o *ingest.Options) error {
	cfg := n.cfg
	o.TLSAddr, o.WSSAddr = cfg.MQTTSAddr, cfg.WSSAddr
	o.WSAddr = cfg.WSAddr
	o.TokenAuth = cfg.MQTTTokenAuth
	o.Authorizer = ingest.AuthorizerOptions{URL: cfg.AuthorizerURL, Timeout: cfg.AuthTimeout}
	if !cfg.Dev && !cfg.MQTTTokenAuth {
		if cfg.MQTTAddr != "" || cfg.WSAddr != "" {
			n.log.Info("plain MQTT and WebSocket listeners are off: devices connect over TLS (--mqtts-addr, --wss-addr); --mqtt-token-auth opens them to tokens")
		}
		o.MQTTAddr, o.WSAddr = "", ""
	}
	ca, err := pki.LoadOrCreateCA(cfg.path("pki"), pki.CAOptions{Logger: n.log})
	if err != nil {
		return err
	}
	o.CA = ca.Certificate()
	if o.TLSAddr != "" || o.WSSAddr != "" {
		cert, err := n.serverCertificate(ca)
		if err != nil {
			return err
		}
		o.TLSCertificate = &cert
	}
	reg, err := registry.New(n.lg, registry.Options{
		Dir: cfg.path("registry"), Topic: n.lg.Topics().Registry, Logger: n.log,
		CheckPolicy: func(doc []byte) error { _, err := policy.Parse("policy", doc); return err },
	})
	if err != nil {
		return err
	}
	n.reg.MustRegister(reg.Collectors()...)
	// The registry outlives the MQTT listeners (acceptPhase), whose
	// connections it decides.
	n.lc.run(ingestPhase, "registry", reg.Run)
	n.lc.onStop(ingestPhase, "registry view", func(context.Context) error { return reg.Close() })
	ctx, cancel := context.WithTimeout(n.lc.ctx(ingestPhase), 2*time.Minute)
	defer cancel()
	if err := reg.WaitReady(ctx); err != nil {
		return fmt.Errorf("%w (the registry reads the %s topic of the log)", err, n.lg.Topics().Registry)
	}
	o.Registry = reg
	if !cfg.Dev {
		n.log.Info("devices authenticate with client certificates: create a thing and its certificate, then connect with the certificate, its key and the CA file",
			"ca_file", cfg.path("pki", pki.CACertFile), "mqtts", cfg.MQTTSAddr)
	}
	return nil
}

// serverCertificate is --tls-cert/--tls-key, or the certificate
// iotpipe's CA issues for localhost, the host name and --tls-names.
func (n *node) serverCertificate(ca *pki.CA) (tls.Certificate, error) {
	cfg := n.cfg
	if cfg.TLSCert != "" {
		c, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return c, fmt.Errorf("--tls-cert %s, --tls-key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		return c, nil
	}
	var names []string
	for _, name := range strings.Split(cfg.TLSNames, ",") {
		if name = strings.TrimSpace(name); name != "" {
			names = append(names, name)
		}
	}
	return ca.ServerCertificate(pki.ServerOptions{Names: names})
}
