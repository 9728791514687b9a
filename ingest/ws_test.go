package ingest

import (
	"net/url"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestWebSocket: paho over WebSocket, as a browser's MQTT client:
// plain ws with a token as the MQTT password or as the token query
// parameter (TokenAuth), wss with a client certificate; each publishes
// and receives what it subscribed to.
func TestWebSocket(t *testing.T) {
	r := newIDRig(t, Options{TokenAuth: true, WSAddr: "127.0.0.1:0", WSSAddr: "127.0.0.1:0"})
	ctx := r.ctx(t)
	r.policy(t, "all", allowAllPolicy)
	_, secret, err := r.reg.CreateToken(ctx, registry.TokenOptions{Principal: "dashboard", Policies: []string{"all"}})
	if err != nil {
		t.Fatal(err)
	}
	certID, cert := r.device(t, "browser-kiosk", registry.CreateOptions{Policies: []string{"all"}})
	ws, wss := r.srv.WSAddr().String(), r.srv.WSSAddr().String()
	tests := []struct {
		name, id, broker, principal string
		opts                        func(*paho.ClientOptions)
	}{
		{"ws, password", "web-1", "ws://" + ws + "/mqtt", "dashboard", func(o *paho.ClientOptions) { o.SetUsername("web").SetPassword(secret) }},
		{"ws, query token", "web-2", "ws://" + ws + "/mqtt?token=" + url.QueryEscape(secret), "dashboard", func(*paho.ClientOptions) {}},
		{"wss, certificate", "browser-kiosk", "wss://" + wss + "/mqtt", certID, func(o *paho.ClientOptions) { o.SetTLSConfig(r.clientTLS(&cert)) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := paho.NewClientOptions().AddBroker(tt.broker).SetClientID(tt.id).SetAutoReconnect(false).SetCleanSession(true).SetConnectTimeout(20 * time.Second)
			tt.opts(o)
			c := paho.NewClient(o)
			if tok := c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				t.Fatalf("connect: %v", tok.Error())
			}
			defer c.Disconnect(100)
			got := make(chan string, 1)
			topic := "web/" + tt.id
			if tok := c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			if tok := c.Publish(topic, 1, false, `{"from":"`+tt.id+`"}`); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				t.Fatal(tok.Error())
			}
			select {
			case p := <-got:
				if p != `{"from":"`+tt.id+`"}` {
					t.Fatalf("received %s", p)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("its own publish never came back")
			}
			recs := r.events(t, func(recs []*kgo.Record) bool { return find(recs, topic, tt.id) != nil })
			if env, _ := schemas.DecodeEnvelope(find(recs, topic, tt.id).Headers); env.Principal != tt.principal {
				t.Errorf("principal %q, want %q", env.Principal, tt.principal)
			}
		})
	}
	// Without a token the plain WebSocket refuses, as plain MQTT does.
	o := paho.NewClientOptions().AddBroker("ws://" + ws + "/mqtt").SetClientID("web-anon").SetAutoReconnect(false).SetConnectTimeout(20 * time.Second)
	if tok := paho.NewClient(o).Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() == nil {
		t.Fatal("an anonymous WebSocket client connected")
	}
}
