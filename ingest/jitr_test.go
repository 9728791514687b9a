package ingest

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotpipe/iotpipe/ingest/pki"
	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/internal/logtest"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestJITR: a device certificate signed by a registered CA connects for
// the first time: it is registered (ACTIVE under a CA that
// auto-activates, and connected; PENDING_ACTIVATION otherwise, and
// refused until activated), its thing is created from the common name
// with the CA's policies attached, and AWS's registration event is on
// the log and delivered to subscribers, once.
func TestJITR(t *testing.T) {
	r := newIDRig(t, Options{})
	ctx := r.ctx(t)
	r.policy(t, "all", allowAllPolicy)
	_, certW := r.device(t, "registrar", registry.CreateOptions{Policies: []string{"all"}})
	w := r.pahoTLS(t, "registrar", certW)
	events := make(chan paho.Message, 8)
	if tok := w.Subscribe(registry.RegisteredTopicPrefix+"#", 1, func(_ paho.Client, m paho.Message) { events <- m }); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	newCA := func(cn string, o registry.CAOptions) (*pki.CA, *registry.CACertificate) {
		ca, err := pki.LoadOrCreateCA(t.TempDir(), pki.CAOptions{CommonName: cn, Logger: logtest.Quiet()})
		if err != nil {
			t.Fatal(err)
		}
		reg, err := r.reg.RegisterCA(ctx, ca.CertificatePEM(), o)
		if err != nil {
			t.Fatal(err)
		}
		return ca, reg
	}
	event := func(caID string) registry.RegisteredEvent {
		t.Helper()
		select {
		case m := <-events:
			var ev registry.RegisteredEvent
			if m.Topic() != registry.RegisteredTopicPrefix+caID || json.Unmarshal(m.Payload(), &ev) != nil {
				t.Fatalf("registration event on %s: %s", m.Topic(), m.Payload())
			}
			return ev
		case <-time.After(30 * time.Second):
			t.Fatal("no registration event delivered")
		}
		return registry.RegisteredEvent{}
	}

	t.Run("auto-activate", func(t *testing.T) {
		fleet, fleetReg := newCA("fleet CA", registry.CAOptions{Active: true, AutoRegistration: true, AutoActivate: true, Policies: []string{"all"}})
		is, err := fleet.Issue(pki.IssueRequest{CommonName: "field-9"})
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second connect finds it registered: no second event
			c := r.pahoTLS(t, "field-9", keyPair(t, is))
			if tok := c.Publish("dt/field-9", 1, false, `{"first":true}`); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			c.Disconnect(100)
		}
		if ev := event(fleetReg.ID); ev.CertificateID != is.ID || ev.CertificateStatus != registry.StatusActive || ev.CACertificateID != fleetReg.ID {
			t.Errorf("event %+v", ev)
		}
		select {
		case m := <-events:
			t.Errorf("a second registration event: %s", m.Payload())
		case <-time.After(200 * time.Millisecond):
		}
		c, err := r.reg.Certificate(is.ID)
		if err != nil || c.Status != registry.StatusActive || c.CAID != fleetReg.ID {
			t.Fatalf("registered certificate %+v, %v", c, err)
		}
		if things, _ := r.reg.PrincipalThings(is.ID); !slices.Equal(things, []string{"field-9"}) {
			t.Errorf("things of the certificate: %v", things)
		}
		recs := r.events(t, func(recs []*kgo.Record) bool {
			return find(recs, registry.RegisteredTopicPrefix+fleetReg.ID, is.ID) != nil
		})
		rec := find(recs, registry.RegisteredTopicPrefix+fleetReg.ID, is.ID)
		env, _ := schemas.DecodeEnvelope(rec.Headers)
		if string(rec.Key) != "field-9" || env.Principal != is.ID || env.Thing != "field-9" || env.Type != schemas.EventPublish {
			t.Errorf("registration record key %q envelope %+v", rec.Key, env)
		}
	})
	t.Run("pending", func(t *testing.T) {
		lab, labReg := newCA("lab CA", registry.CAOptions{Active: true, AutoRegistration: true, Policies: []string{"all"}})
		is, err := lab.Issue(pki.IssueRequest{CommonName: "bench-3"})
		if err != nil {
			t.Fatal(err)
		}
		kp := keyPair(t, is)
		for _, v5 := range []bool{true, false} {
			if _, code := dialConnect(t, r.dialTLS(t, &kp), "bench-3", v5, "", ""); code != map[bool]byte{true: 0x87, false: 0x05}[v5] {
				t.Fatalf("v5=%v: CONNACK 0x%02x, want not authorized (pending activation)", v5, code)
			}
		}
		if ev := event(labReg.ID); ev.CertificateStatus != registry.StatusPendingActivation {
			t.Errorf("event %+v", ev)
		}
		if _, err := r.reg.ActivateCertificate(ctx, is.ID); err != nil {
			t.Fatal(err)
		}
		r.pahoTLS(t, "bench-3", kp).Disconnect(100)
	})
}
