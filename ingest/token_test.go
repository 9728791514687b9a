package ingest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// dialPlain opens a TCP connection to the plain MQTT listener.
func (r *idRig) dialPlain(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", r.addr, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pahoToken connects id with the token as password over the plain
// listener (tls false) or the TLS one without a client certificate.
func (r *idRig) pahoToken(t testing.TB, id, secret string, tls bool) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().SetClientID(id).SetAutoReconnect(false).SetCleanSession(true).
		SetUsername("device").SetPassword(secret).SetConnectTimeout(20 * time.Second)
	if tls {
		o.AddBroker("ssl://" + r.tls).SetTLSConfig(r.clientTLS(nil))
	} else {
		o.AddBroker("tcp://" + r.addr)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(30 * time.Second) {
		return nil, fmt.Errorf("connect %s: no answer", id)
	}
	if tok.Error() == nil {
		t.Cleanup(func() { c.Disconnect(0) })
	}
	return c, tok.Error()
}

// TestTokens: a registry token is the MQTT password: over TLS always,
// over plain MQTT only with TokenAuth; its principal is the envelope's
// principal and its attached thing the record key; an unknown token is
// refused as bad credentials.
func TestTokens(t *testing.T) {
	for _, tokenAuth := range []bool{false, true} {
		t.Run(fmt.Sprintf("TokenAuth=%v", tokenAuth), func(t *testing.T) {
			r := newIDRig(t, Options{TokenAuth: tokenAuth})
			ctx := r.ctx(t)
			r.policy(t, "all", allowAllPolicy)
			if _, err := r.reg.CreateThing(ctx, registry.Thing{Name: "kiosk-4"}); err != nil {
				t.Fatal(err)
			}
			_, secret, err := r.reg.CreateToken(ctx, registry.TokenOptions{Principal: "kiosks", Policies: []string{"all"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.reg.AttachThingPrincipal(ctx, "kiosk-4", "kiosks"); err != nil {
				t.Fatal(err)
			}
			c, err := r.pahoToken(t, "kiosk-4", secret, true)
			if err != nil {
				t.Fatalf("token over TLS: %v", err)
			}
			if tok := c.Publish("dt/kiosk-4", 1, false, `{"over":"tls"}`); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			for _, v5 := range []bool{false, true} {
				_, code := dialConnect(t, r.dialPlain(t), "kiosk-4", v5, "device", secret)
				want := byte(0)
				if !tokenAuth {
					want = map[bool]byte{false: 0x05, true: 0x87}[v5]
				}
				if code != want {
					t.Errorf("plain listener, v5=%v: CONNACK 0x%02x, want 0x%02x", v5, code, want)
				}
				_, code = dialConnect(t, r.dialTLS(t, nil), "kiosk-4", v5, "device", registry.TokenPrefix+"not-a-token")
				if want := map[bool]byte{false: 0x04, true: 0x86}[v5]; code != want {
					t.Errorf("unknown token, v5=%v: CONNACK 0x%02x, want 0x%02x", v5, code, want)
				}
			}
			recs := r.events(t, func(recs []*kgo.Record) bool { return find(recs, "dt/kiosk-4", "tls") != nil })
			rec := find(recs, "dt/kiosk-4", "tls")
			if env, _ := schemas.DecodeEnvelope(rec.Headers); env.Principal != "kiosks" || env.Thing != "kiosk-4" || string(rec.Key) != "kiosk-4" {
				t.Errorf("envelope %+v key %q", env, rec.Key)
			}
			reason := "bad_token"
			if !tokenAuth {
				reason = "plain_listener"
			}
			if counterValue(r.srv.metrics.authRefused.WithLabelValues(reason)) == 0 {
				t.Errorf("auth_refused{%s} = 0", reason)
			}
		})
	}
}

// fakeAuthorizer is a custom authorizer over HTTP: it answers by the
// token's first word (allow, deny, slow, broken, ttl) and records the
// requests.
type fakeAuthorizer struct {
	*httptest.Server
	calls atomic.Int64
	mu    sync.Mutex
	last  authorizerRequest
}

func newFakeAuthorizer(t *testing.T) *fakeAuthorizer {
	f := &fakeAuthorizer{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		f.calls.Add(1)
		var in authorizerRequest
		if err := json.NewDecoder(req.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.last = in
		f.mu.Unlock()
		allow := func(principal string, disconnect int) {
			doc := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"},`+
				`{"Effect":"Allow","Action":["iot:Publish","iot:Subscribe","iot:Receive"],"Resource":["topic/app/%[1]s/*","topicfilter/app/%[1]s/*"]}]}`, principal)
			json.NewEncoder(w).Encode(map[string]any{"isAuthenticated": true, "principalId": principal,
				"policyDocuments": []string{doc}, "disconnectAfterInSeconds": disconnect, "refreshAfterInSeconds": 300})
		}
		switch word, _, _ := strings.Cut(in.Token, "-"); word {
		case "allow":
			allow("app1", 86400)
		case "ttl":
			allow("short", 1)
		case "deny":
			json.NewEncoder(w).Encode(map[string]any{"isAuthenticated": false})
		case "slow":
			time.Sleep(3 * time.Second)
			allow("late", 86400)
		default:
			http.Error(w, "broken", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

// TestCustomAuthorizer: a token that is not a registry token goes to the
// custom authorizer: allow connects as its principal under its policies
// (its answer cached for the refresh period), deny is not authorized, a
// timeout or an error fails closed (server unavailable), and
// disconnectAfterInSeconds ends the session with
// CUSTOMAUTH_TTL_EXPIRATION.
func TestCustomAuthorizer(t *testing.T) {
	az := newFakeAuthorizer(t)
	r := newIDRig(t, Options{TokenAuth: true, Authorizer: AuthorizerOptions{URL: az.URL, Timeout: 500 * time.Millisecond}})
	c, err := r.pahoToken(t, "app-client", "allow-1", false)
	if err != nil {
		t.Fatalf("allowed token: %v", err)
	}
	az.mu.Lock()
	last := az.last
	az.mu.Unlock()
	if last.Token != "allow-1" || last.ProtocolData.MQTT == nil || last.ProtocolData.MQTT.ClientID != "app-client" ||
		string(last.ProtocolData.MQTT.Password) != "allow-1" || last.ProtocolData.MQTT.Username != "device" {
		t.Errorf("authorizer request %+v", last)
	}
	if tok := c.Publish("app/app1/status", 1, false, `{"via":"authorizer"}`); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	calls := az.calls.Load()
	if _, err := r.pahoToken(t, "app-client-2", "allow-1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := r.pahoToken(t, "app-client-2", "allow-1", false); err != nil {
		t.Fatal(err)
	}
	if got := az.calls.Load() - calls; got != 1 {
		t.Errorf("two connects with one token and client id called the authorizer %d times, want 1 (then cached)", got)
	}
	for _, tt := range []struct {
		token, reason string
		v5, v3        byte
	}{
		{"deny-1", "authorizer_denied", 0x87, 0x05},
		{"slow-1", "authorizer_error", 0x88, 0x03},
		{"broken-1", "authorizer_error", 0x88, 0x03},
	} {
		for _, v5 := range []bool{false, true} {
			_, code := dialConnect(t, r.dialPlain(t), "app-refused", v5, "device", tt.token)
			if want := map[bool]byte{false: tt.v3, true: tt.v5}[v5]; code != want {
				t.Errorf("%s, v5=%v: CONNACK 0x%02x, want 0x%02x", tt.token, v5, code, want)
			}
		}
		if counterValue(r.srv.metrics.authRefused.WithLabelValues(tt.reason)) == 0 {
			t.Errorf("auth_refused{%s} = 0", tt.reason)
		}
	}
	// disconnectAfterInSeconds: 1.
	lost := make(chan struct{})
	o := paho.NewClientOptions().AddBroker("tcp://" + r.addr).SetClientID("short-lived").SetAutoReconnect(false).
		SetUsername("device").SetPassword("ttl-1").SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	if tok := paho.NewClient(o).Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	select {
	case <-lost:
	case <-time.After(60 * time.Second):
		t.Fatal("the session outlived disconnectAfterInSeconds")
	}
	recs := r.events(t, func(recs []*kgo.Record) bool {
		return find(recs, "$aws/events/presence/disconnected/short-lived", "CUSTOMAUTH_TTL_EXPIRATION") != nil &&
			find(recs, "app/app1/status", "authorizer") != nil
	})
	if env, _ := schemas.DecodeEnvelope(find(recs, "app/app1/status", "authorizer").Headers); env.Principal != "app1" {
		t.Errorf("principal %q, want the authorizer's app1", env.Principal)
	}
}
