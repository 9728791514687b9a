package ingest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotpipe/iotpipe/ingest/registry"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/twmb/franz-go/pkg/kgo"
)

// greenhousePolicy is the example: each device connects, and
// publishes, subscribes and receives, under its own client id only.
const greenhousePolicy = `{"Version":"2012-10-17","Statement":[
{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:us-east-1:123456789012:client/${iot:ClientId}"},
{"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"arn:aws:iot:us-east-1:123456789012:topic/greenhouse/${iot:ClientId}/*"},
{"Effect":"Allow","Action":"iot:Subscribe","Resource":"arn:aws:iot:us-east-1:123456789012:topicfilter/greenhouse/${iot:ClientId}/*"}]}`

// watcherPolicy subscribes to every greenhouse but receives gh-a's only.
const watcherPolicy = `{"Version":"2012-10-17","Statement":[
{"Effect":"Allow","Action":"iot:Connect","Resource":"*"},
{"Effect":"Allow","Action":"iot:Subscribe","Resource":"topicfilter/greenhouse/#"},
{"Effect":"Allow","Action":"iot:Receive","Resource":"topic/greenhouse/gh-a/*"}]}`

// TestGreenhousePolicy: under topic/greenhouse/${iot:ClientId}/*, device
// A cannot publish to B's topic (MQTT 5: PUBACK 0x87 and the connection
// stays; 3.1.1: closed), a subscription outside its filter is refused
// (SUBACK 0x87; 3.1.1: 0x80), B is unaffected, a delivery its policy
// does not allow to receive is not made, and the denied message is not
// in the log.
func TestGreenhousePolicy(t *testing.T) {
	r := newIDRig(t, Options{})
	r.policy(t, "greenhouse", greenhousePolicy)
	r.policy(t, "watcher", watcherPolicy)
	_, certA := r.device(t, "gh-a", registry.CreateOptions{Policies: []string{"greenhouse"}})
	_, certB := r.device(t, "gh-b", registry.CreateOptions{Policies: []string{"greenhouse"}})
	_, certW := r.device(t, "gh-watcher", registry.CreateOptions{Policies: []string{"watcher"}})

	// The watcher's subscription is allowed; what it receives is
	// decided per message by iot:Receive.
	w := r.pahoTLS(t, "gh-watcher", certW)
	var mu sync.Mutex
	var watched []string
	if tok := w.Subscribe("greenhouse/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		watched = append(watched, m.Topic())
		mu.Unlock()
	}); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil || tok.(*paho.SubscribeToken).Result()["greenhouse/#"] != 1 {
		t.Fatalf("watcher subscribe: %v %v", tok.Error(), tok.(*paho.SubscribeToken).Result())
	}
	b := r.pahoTLS(t, "gh-b", certB)
	pubB := func(i int) {
		t.Helper()
		if tok := b.Publish("greenhouse/gh-b/temp", 1, false, fmt.Sprintf(`{"b":%d}`, i)); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatalf("B's publish %d: %v", i, tok.Error())
		}
	}

	t.Run("v5", func(t *testing.T) {
		v := r.dialV5TLS(t, "gh-a", certA)
		v.publish("greenhouse/gh-a/temp", `{"a":1}`, false, packets.Properties{})
		v.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "greenhouse/gh-b/temp",
			Payload: []byte(`{"forged":"by gh-a"}`), PacketID: v.nextID()})
		if ack := v.awaitAck("publish on B's topic"); ack.FixedHeader.Type != packets.Puback || ack.ReasonCode != 0x87 {
			t.Fatalf("publish on B's topic: %+v, want PUBACK 0x87", describeAck(ack))
		}
		pubB(1)
		v.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: v.nextID(),
			Filters: packets.Subscriptions{{Filter: "greenhouse/gh-b/#", Qos: 1}, {Filter: "greenhouse/gh-a/cmd", Qos: 1}}})
		if ack := v.awaitAck("subscribe"); ack.FixedHeader.Type != packets.Suback || len(ack.ReasonCodes) != 2 || ack.ReasonCodes[0] != 0x87 || ack.ReasonCodes[1] != 1 {
			t.Fatalf("SUBACK %s, want [0x87 1]", describeAck(ack))
		}
		// The connection stays: a retained-free publish on its own topic.
		v.publish("greenhouse/gh-a/temp", `{"a":2}`, false, packets.Properties{})
		// Retaining needs iot:RetainPublish, which it has not.
		v.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true}, TopicName: "greenhouse/gh-a/state",
			Payload: []byte(`{"forged":"retained"}`), PacketID: v.nextID()})
		if ack := v.awaitAck("retained publish"); ack.ReasonCode != 0x87 {
			t.Fatalf("retained publish: %s, want PUBACK 0x87", describeAck(ack))
		}
		v.disconnect()
	})
	t.Run("v3", func(t *testing.T) {
		a := r.pahoTLS(t, "gh-a", certA)
		tok := a.Subscribe("greenhouse/gh-b/#", 1, nil)
		if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		if got := tok.(*paho.SubscribeToken).Result()["greenhouse/gh-b/#"]; got != 0x80 {
			t.Fatalf("SUBACK 0x%x, want 0x80", got)
		}
		rc, code := dialConnect(t, r.dialTLS(t, &certA), "gh-a", false, "", "")
		if code != 0 {
			t.Fatalf("CONNACK 0x%x", code)
		}
		rc.c.Write(rc.publishQoS("greenhouse/gh-b/temp", 1, 9, []byte(`{"forged":"v3"}`)))
		rc.expectRefused(closed)
	})
	pubB(2)
	b.Publish("greenhouse/gh-a/end", 1, false, `{"forged":"B on A's topic"}`).WaitTimeout(30 * time.Second)

	recs := r.events(t, func(recs []*kgo.Record) bool {
		return find(recs, "greenhouse/gh-a/temp", `"a":2`) != nil && find(recs, "greenhouse/gh-b/temp", `"b":2`) != nil
	})
	for _, rec := range recs {
		if strings.Contains(string(rec.Value), "forged") {
			t.Errorf("a denied publish is in the log: %s %s", schemas.HeaderValue(rec.Headers, schemas.HeaderTopic), rec.Value)
		}
	}
	// The watcher got A's messages, none of B's.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n, got := len(watched), append([]string(nil), watched...)
		mu.Unlock()
		if n >= 2 || time.Now().After(deadline) {
			for _, topic := range got {
				if !strings.HasPrefix(topic, "greenhouse/gh-a/") {
					t.Errorf("the watcher received %s, which its policy does not let it receive", topic)
				}
			}
			if n < 2 {
				t.Errorf("the watcher received %v, want gh-a's two publishes", got)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, reason := range []string{"publish_denied", "subscribe_denied", "receive_denied"} {
		if counterValue(r.srv.metrics.refused.WithLabelValues(reason)) == 0 {
			t.Errorf("refused{%s} = 0", reason)
		}
	}
}

// describeAck shows an ack's type and codes.
func describeAck(pk packets.Packet) string {
	return fmt.Sprintf("type %d id %d reason 0x%02x codes %v", pk.FixedHeader.Type, pk.PacketID, pk.ReasonCode, pk.ReasonCodes)
}

// TestPolicyChangeReachesLiveSessions: detaching a policy from a
// connected device's certificate takes its permissions away from the
// live session, attaching gives them back.
func TestPolicyChangeReachesLiveSessions(t *testing.T) {
	r := newIDRig(t, Options{})
	r.policy(t, "connect", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"*"}]}`)
	r.policy(t, "publish", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Publish","Resource":"topic/dt/*"}]}`)
	certID, cert := r.device(t, "pump-1", registry.CreateOptions{Policies: []string{"connect", "publish"}})
	v := r.dialV5TLS(t, "pump-1", cert)
	v.publish("dt/pump-1", `{"n":1}`, false, packets.Properties{})
	if err := r.reg.DetachPolicy(r.ctx(t), "publish", certID); err != nil {
		t.Fatal(err)
	}
	v.eventually("the publish denied once the policy is detached", 0x87)
	if err := r.reg.AttachPolicy(r.ctx(t), "publish", certID); err != nil {
		t.Fatal(err)
	}
	v.eventually("the publish allowed once it is attached again", 0)
}

// dialV5TLS connects id over TLS with cert as an MQTT 5 client.
func (r *idRig) dialV5TLS(t *testing.T, id string, cert tls.Certificate) *v5Client {
	t.Helper()
	v := &v5Client{t: t, c: r.dialTLS(t, &cert), got: make(chan packets.Packet, 64), ack: make(chan packets.Packet, 64)}
	v.r = bufio.NewReader(v.c)
	v.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, ClientIdentifier: id, Keepalive: 60}})
	if ack, err := v.readPacket(); err != nil || ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("CONNACK %v %+v", err, describeAck(ack))
	}
	go v.loop()
	return v
}

// eventually publishes on dt/<n> at QoS 1 until the PUBACK's reason
// code is want (60s at most).
func (v *v5Client) eventually(what string, want byte) {
	v.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		v.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: fmt.Sprintf("dt/%d", i),
			Payload: []byte(`{}`), PacketID: v.nextID()})
		if ack := v.awaitAck(what); ack.ReasonCode == want {
			return
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("%s: not within 60s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
