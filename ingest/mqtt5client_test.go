package ingest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// v5Client is an MQTT 5 test client over mochi-mqtt's packet codec:
// it sends packets with any properties and subscription options, and
// decodes the PUBLISHes it receives with theirs (answering QoS 1 ones).
type v5Client struct {
	t   *testing.T
	c   net.Conn
	r   *bufio.Reader
	id  uint16
	got chan packets.Packet // PUBLISHes received
	ack chan packets.Packet // other packets received
}

// dialV5 connects id to addr, with a persistent session of
// sessionExpiry seconds when it is not 0 (clean start off).
func dialV5(t *testing.T, addr, id string, sessionExpiry uint32) *v5Client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	v := &v5Client{t: t, c: c, r: bufio.NewReader(c), got: make(chan packets.Packet, 64), ack: make(chan packets.Packet, 64)}
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 5,
		Connect:         packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: sessionExpiry == 0, ClientIdentifier: id, Keepalive: 60},
	}
	if sessionExpiry > 0 {
		pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = sessionExpiry, true
	}
	v.send(pk)
	ack, err := v.readPacket()
	if err != nil || ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		t.Fatalf("connect %s: %v %+v", id, err, ack)
	}
	go v.loop()
	return v
}

func (v *v5Client) send(pk packets.Packet) {
	v.t.Helper()
	if err := v.write(pk); err != nil {
		v.t.Errorf("send: %v", err)
	}
}

// write encodes and writes pk.
func (v *v5Client) write(pk packets.Packet) error {
	pk.ProtocolVersion = 5
	pk.Mods.AllowResponseInfo = true // encode response topic and correlation data
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	default:
		err = fmt.Errorf("cannot send packet type %d", pk.FixedHeader.Type)
	}
	if err == nil {
		_, err = v.c.Write(buf.Bytes())
	}
	return err
}

func (v *v5Client) readPacket() (packets.Packet, error) {
	var pk packets.Packet
	b, err := v.r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(b); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(v.r)
	if err != nil {
		return pk, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(v.r, body); err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n // acks decode their reason code only when the length says there is one
	pk.ProtocolVersion = 5
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	}
	return pk, err
}

// loop receives until the connection ends.
func (v *v5Client) loop() {
	for {
		pk, err := v.readPacket()
		if err != nil {
			return
		}
		if pk.FixedHeader.Type != packets.Publish {
			v.ack <- pk
			continue
		}
		if pk.FixedHeader.Qos == 1 {
			_ = v.write(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
		}
		v.got <- pk
	}
}

func (v *v5Client) nextID() uint16 {
	v.id++
	return v.id
}

// awaitAck waits for the next packet that is not a PUBLISH.
func (v *v5Client) awaitAck(what string) packets.Packet {
	v.t.Helper()
	select {
	case pk := <-v.ack:
		return pk
	case <-time.After(10 * time.Second):
		v.t.Fatalf("no answer to %s", what)
	}
	return packets.Packet{}
}

// subscribe subscribes with the options of sub (and a subscription
// identifier when id is not 0) and waits for the SUBACK.
func (v *v5Client) subscribe(sub packets.Subscription, id int) {
	v.t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: v.nextID(), Filters: packets.Subscriptions{sub}}
	if id != 0 {
		pk.Properties.SubscriptionIdentifier = []int{id}
	}
	v.send(pk)
	if ack := v.awaitAck("SUBSCRIBE " + sub.Filter); ack.FixedHeader.Type != packets.Suback || len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] > 2 {
		v.t.Fatalf("SUBACK %+v", ack)
	}
	// mochi sends retained messages after the SUBACK; it answers the
	// next packet of the connection once the subscription is done.
	v.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	if ack := v.awaitAck("PINGREQ"); ack.FixedHeader.Type != packets.Pingresp {
		v.t.Fatalf("PINGRESP %+v", ack)
	}
}

// publish publishes at QoS 1 with props and waits for the PUBACK.
func (v *v5Client) publish(topic, payload string, retain bool, props packets.Properties) {
	v.t.Helper()
	v.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: retain},
		TopicName:   topic, Payload: []byte(payload), PacketID: v.nextID(), Properties: props,
	})
	if ack := v.awaitAck("PUBLISH " + topic); ack.FixedHeader.Type != packets.Puback || ack.ReasonCode >= 0x80 {
		v.t.Fatalf("PUBACK %+v", ack)
	}
}

// disconnect sends DISCONNECT and closes the connection.
func (v *v5Client) disconnect() {
	v.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	v.c.Close()
}

// received describes the PUBLISHes received within wait, one line each,
// sorted: topic, payload, QoS, retain and the MQTT 5 properties (the
// message expiry rounded to 10 s).
func (v *v5Client) received(wait time.Duration) []string {
	var out []string
	deadline := time.Now().Add(wait)
	for {
		select {
		case pk := <-v.got:
			out = append(out, describe(pk))
			continue
		default:
		}
		d := time.Until(deadline)
		if d <= 0 {
			sort.Strings(out)
			return out
		}
		select {
		case pk := <-v.got:
			out = append(out, describe(pk))
		case <-time.After(d):
		}
	}
}

func describe(pk packets.Packet) string {
	p := pk.Properties
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q qos=%d retain=%v", pk.TopicName, pk.Payload, pk.FixedHeader.Qos, pk.FixedHeader.Retain)
	for _, u := range p.User {
		fmt.Fprintf(&b, " user:%s=%s", u.Key, u.Val)
	}
	if p.ContentType != "" {
		fmt.Fprintf(&b, " content-type=%s", p.ContentType)
	}
	if p.ResponseTopic != "" {
		fmt.Fprintf(&b, " response-topic=%s", p.ResponseTopic)
	}
	if len(p.CorrelationData) > 0 {
		fmt.Fprintf(&b, " correlation=%q", p.CorrelationData)
	}
	if p.PayloadFormatFlag {
		fmt.Fprintf(&b, " payload-format=%d", p.PayloadFormat)
	}
	if len(p.SubscriptionIdentifier) > 0 {
		fmt.Fprintf(&b, " sub-ids=%v", p.SubscriptionIdentifier)
	}
	if p.MessageExpiryInterval > 0 {
		fmt.Fprintf(&b, " expiry~%d", (p.MessageExpiryInterval+5)/10*10)
	}
	return b.String()
}
