package ingest

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestRevocationEndsSessions: revoking or deactivating a certificate,
// deleting its thing, or revoking a token ends the live sessions it
// authenticated, on this node, with a disconnected lifecycle event whose
// disconnectReason is AUTH_ERROR and whose disconnectDetail says why;
// other sessions stay.
func TestRevocationEndsSessions(t *testing.T) {
	r := newIDRig(t, Options{})
	r.policy(t, "all", allowAllPolicy)
	_, bystanderCert := r.device(t, "bystander", registry.CreateOptions{Policies: []string{"all"}})
	bystander := r.pahoTLS(t, "bystander", bystanderCert)
	other := r.otherNode(t)
	tests := []struct {
		name   string
		detail string
		act    func(ctx context.Context, certID, thing, tokenID string) error
		token  bool
	}{
		{"revoke certificate", "certificate REVOKED", func(ctx context.Context, certID, _, _ string) error {
			_, err := r.reg.RevokeCertificate(ctx, certID)
			return err
		}, false},
		{"deactivate certificate", "certificate INACTIVE", func(ctx context.Context, certID, _, _ string) error {
			_, err := r.reg.DeactivateCertificate(ctx, certID)
			return err
		}, false},
		{"delete thing", "thing deleted", func(ctx context.Context, _, thing, _ string) error {
			return r.reg.DeleteThing(ctx, thing, 0)
		}, false},
		{"revoke token", "token revoked", func(ctx context.Context, _, _, tokenID string) error {
			return r.reg.RevokeToken(ctx, tokenID)
		}, true},
		// The operator's command runs on another node: this node learns
		// of it by following the registry topic.
		{"revoke certificate on another node", "certificate REVOKED", func(ctx context.Context, certID, _, _ string) error {
			_, err := other.RevokeCertificate(ctx, certID)
			return err
		}, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := r.ctx(t)
			thing := "victim-" + string(rune('a'+i))
			certID, cert := r.device(t, thing, registry.CreateOptions{Policies: []string{"all"}})
			tok, secret, err := r.reg.CreateToken(ctx, registry.TokenOptions{Principal: "holder" + string(rune('a'+i)), Policies: []string{"all"}})
			if err != nil {
				t.Fatal(err)
			}
			lost := make(chan error, 1)
			o := paho.NewClientOptions().AddBroker("ssl://" + r.tls).SetClientID(thing).SetAutoReconnect(false).SetCleanSession(true).
				SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
			if tt.token {
				o.SetTLSConfig(r.clientTLS(nil)).SetUsername("device").SetPassword(secret)
			} else {
				o.SetTLSConfig(r.clientTLS(&cert))
			}
			c := paho.NewClient(o)
			if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			start := time.Now()
			if err := tt.act(ctx, certID, thing, tok.ID); err != nil {
				t.Fatal(err)
			}
			select {
			case <-lost:
				t.Logf("%s: session ended %v after the registry write returned", tt.name, time.Since(start).Round(time.Millisecond))
			case <-time.After(60 * time.Second):
				t.Fatal("the session is still connected")
			}
			topic := "$aws/events/presence/disconnected/" + thing
			recs := r.events(t, func(recs []*kgo.Record) bool { return find(recs, topic, "AUTH_ERROR") != nil })
			var ev presenceEvent
			if err := json.Unmarshal(find(recs, topic, "AUTH_ERROR").Value, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.DisconnectReason != "AUTH_ERROR" || ev.DisconnectDetail != tt.detail || *ev.ClientInitiatedDisconnect {
				t.Errorf("disconnected event %+v, want AUTH_ERROR and %q", ev, tt.detail)
			}
			if !bystander.IsConnectionOpen() {
				t.Fatal("an unrelated session ended")
			}
		})
	}
}

// otherNode runs a second registry node on the rig's log (another
// iotpipe process's view), stopped when the test ends.
func (r *idRig) otherNode(t *testing.T) *registry.Registry {
	t.Helper()
	return runRegistry(t, r.log, registry.Options{Dir: filepath.Join(t.TempDir(), "registry"), Logger: logtest.Quiet()})
}
