package ingest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Limits and reserved topics, over raw MQTT 3.1.1 and 5 packets: the
// exact reason codes, other clients publishing meanwhile, nothing a
// refused client sent in the log, and no subscriber receiving a
// forgery.
func TestLimitsAndReservedTopics(t *testing.T) {
	r := newRig(t, Options{})
	good := client(t, r.addr, "good-client", false)
	watcher := client(t, r.addr, "watcher", false)
	var mu sync.Mutex
	var forged []string
	for _, f := range []string{"$aws/events/#", "$AWS/#", "$aws/things/+/shadow/#", "$aws/things/+/shadow/name/+/#", "$SYS/#", "#"} {
		if tok := watcher.Subscribe(f, 1, func(_ paho.Client, m paho.Message) {
			if strings.Contains(string(m.Payload()), "forged") {
				mu.Lock()
				forged = append(forged, m.Topic())
				mu.Unlock()
			}
		}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	const (
		connackCode = iota // CONNECT refused: CONNACK code
		disconnect         // PUBLISH refused: MQTT 5 DISCONNECT code, 3.1.1 closed
		puback             // PUBLISH refused: MQTT 5 PUBACK code (the connection stays), 3.1.1 closed
	)
	long := strings.Repeat("x", 250)
	tests := []struct {
		name     string
		id, will string // CONNECT
		topic    string // PUBLISH (when no CONNECT refusal)
		qos      byte
		how      int
		v5, v3   byte // reason codes (v3 only for CONNACK)
	}{
		{name: "topic over 256 bytes", topic: "t/" + long + "/abcdefg", qos: 1, how: disconnect, v5: 0x90},
		{name: "topic with 8 slashes", topic: "1/2/3/4/5/6/7/8/9", qos: 1, how: disconnect, v5: 0x90},
		{name: "thing name over 128 bytes", topic: "$aws/things/" + strings.Repeat("n", 129) + "/shadow/update", qos: 1, how: disconnect, v5: 0x90},
		{name: "NUL in the topic", topic: "a/\x00b", qos: 1, how: disconnect, v5: 0x90},
		{name: "$SYS at QoS 1", topic: "$SYS/broker/uptime", qos: 1, how: puback, v5: 0x87},
		{name: "$SYS at QoS 0", topic: "$SYS/broker/uptime", qos: 0, how: disconnect, v5: 0x87},
		{name: "presence event", topic: "$aws/events/presence/connected/good-client", qos: 1, how: puback, v5: 0x87},
		{name: "presence event in another case", topic: "$AWS/Events/presence/disconnected/good-client", qos: 1, how: puback, v5: 0x87},
		{name: "presence event at QoS 0", topic: "$aws/events/presence/connected/good-client", qos: 0, how: disconnect, v5: 0x87},
		{name: "subscription event", topic: "$aws/events/subscriptions/subscribed/good-client", qos: 1, how: puback, v5: 0x87},
		{name: "shadow accepted", topic: "$aws/things/lamp/shadow/update/accepted", qos: 1, how: puback, v5: 0x87},
		{name: "shadow delta", topic: "$aws/things/lamp/shadow/update/delta", qos: 1, how: puback, v5: 0x87},
		{name: "shadow documents", topic: "$aws/things/lamp/shadow/update/documents", qos: 1, how: puback, v5: 0x87},
		{name: "shadow get rejected", topic: "$aws/things/lamp/shadow/get/rejected", qos: 1, how: puback, v5: 0x87},
		{name: "named shadow delete accepted", topic: "$aws/things/lamp/shadow/name/cfg/delete/accepted", qos: 1, how: puback, v5: 0x87},
		{name: "client id over 128 bytes", id: strings.Repeat("c", 129), how: connackCode, v5: 0x85, v3: 0x02},
		{name: "client id with +", id: "a+b", how: connackCode, v5: 0x85, v3: 0x02},
		{name: "client id with #", id: "a#", how: connackCode, v5: 0x85, v3: 0x02},
		{name: "reserved will topic", will: "$aws/events/presence/disconnected/good-client", how: connackCode, v5: 0x87, v3: 0x05},
		{name: "will topic with 8 slashes", will: "1/2/3/4/5/6/7/8/9", how: connackCode, v5: 0x90, v3: 0x05},
	}
	for i, tt := range tests {
		for _, v5 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/v5=%v", tt.name, v5), func(t *testing.T) {
				id := tt.id
				if id == "" {
					id = fmt.Sprintf("refused-%d-%v", i, v5)
				}
				rc, code := dialRawConnect(t, r.addr, id, v5, tt.will, []byte(`{"forged":"will"}`))
				switch {
				case tt.how == connackCode:
					want := tt.v3
					if v5 {
						want = tt.v5
					}
					if code != want {
						t.Fatalf("CONNACK 0x%02x, want 0x%02x", code, want)
					}
					if typ, body := rc.read(); typ != closed {
						t.Fatalf("after the refused CONNECT: 0x%x %v", typ, body)
					}
				case code != 0:
					t.Fatalf("CONNACK 0x%02x", code)
				case tt.how == puback && v5:
					rc.c.Write(rc.publishQoS(tt.topic, 1, 7, []byte(`{"forged":true}`)))
					typ, body := rc.read()
					if typ != 0x40 || len(body) < 3 || body[1] != 7 || body[2] != tt.v5 {
						t.Fatalf("want PUBACK 7 with 0x%02x, got 0x%x %v", tt.v5, typ, body)
					}
					// The connection stays: a valid publish is acknowledged.
					rc.c.Write(rc.publishQoS("refused/ok", 1, 8, []byte(`{"ok":1}`)))
					if typ, body := rc.read(); typ != 0x40 || body[1] != 8 || (len(body) > 2 && body[2] != 0) {
						t.Fatalf("want PUBACK 8, got 0x%x %v", typ, body)
					}
				default:
					rc.c.Write(rc.publishQoS(tt.topic, tt.qos, 7, []byte(`{"forged":true}`)))
					want := tt.v5
					if !v5 {
						want = closed
					}
					rc.expectRefused(want)
				}
				// A well-behaved client still publishes and is acknowledged.
				tok := good.Publish("farm/ok", 1, false, fmt.Sprintf(`{"i":%d}`, i))
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Fatalf("good client publish after %s: %v", tt.name, tok.Error())
				}
			})
		}
	}
	// Nothing refused reached the log, and no subscriber got a forgery.
	for _, rec := range r.readAll(t, r.log.Topics().Events, 1) {
		env, err := schemas.DecodeEnvelope(rec.Headers)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(rec.Value), "forged") {
			t.Errorf("refused publish logged: %+v", env)
		}
	}
	// The watcher reads in order: a last publish it receives comes after
	// anything routed before.
	done := make(chan struct{})
	watcher.Subscribe("refused/end", 1, func(paho.Client, paho.Message) { close(done) }).Wait()
	good.Publish("refused/end", 1, false, "end").Wait()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher never got the last publish")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(forged) > 0 {
		t.Fatalf("a subscriber received forgeries on %v", forged)
	}
}

// TestReservedTopicThroughAlias: an MQTT 5 topic alias set by a refused
// publish on a reserved topic does not let a later publish that names
// only the alias through (mochi resolves the alias after the hooks that
// refuse; the refusal resolves it first).
func TestReservedTopicThroughAlias(t *testing.T) {
	r := newRig(t, Options{})
	v := dialV5(t, r.addr, "alias-forger", 0)
	const reserved = "$aws/events/presence/connected/alias-forger"
	alias := packets.Properties{TopicAlias: 1, TopicAliasFlag: true}
	for i, topic := range []string{reserved, ""} {
		v.send(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName:   topic, Payload: []byte(`{"forged":true}`), PacketID: v.nextID(), Properties: alias,
		})
		if ack := v.awaitAck(fmt.Sprintf("PUBLISH %d", i)); ack.FixedHeader.Type != packets.Puback || ack.ReasonCode != packets.ErrNotAuthorized.Code {
			t.Fatalf("publish %d (topic %q, alias 1): %+v, want PUBACK 0x87", i, topic, ack)
		}
	}
	v.publish("alias/ok", `{"ok":1}`, false, packets.Properties{})
	for _, rec := range r.readAll(t, r.log.Topics().Events, 2) {
		if strings.Contains(string(rec.Value), "forged") {
			env, _ := schemas.DecodeEnvelope(rec.Headers)
			t.Errorf("refused publish logged: %+v", env)
		}
	}
}
