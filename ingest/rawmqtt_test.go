package ingest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// rawClient speaks MQTT bytes directly, to send what real clients never
// would (bad topics, malformed packets) and to stop reading on purpose.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	r  *bufio.Reader
	v5 bool
}

func dialRaw(t *testing.T, addr, id string, v5 bool) *rawClient {
	t.Helper()
	rc, code := dialRawConnect(t, addr, id, v5, "", nil)
	if code != 0 {
		t.Fatalf("connack 0x%02x", code)
	}
	return rc
}

// dialRawConnect connects with client id, and a Will on willTopic when
// it is not empty, and returns the CONNACK's return (3.1.1) or reason
// (5) code.
func dialRawConnect(t *testing.T, addr, id string, v5 bool, willTopic string, willPayload []byte) (*rawClient, byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawClient{t: t, c: c, r: bufio.NewReader(c), v5: v5}
	rc.send(0x10, connectBody(id, v5, willTopic, willPayload, "", ""))
	typ, ack := rc.read()
	if typ != 0x20 || len(ack) < 2 {
		t.Fatalf("connack %x %v", typ, ack)
	}
	return rc, ack[1]
}

// connectBody is the body of a clean-session CONNECT of id (keepalive
// 60), with a QoS 1 Will on willTopic when it is not empty, and user and
// pass when user is not empty.
func connectBody(id string, v5 bool, willTopic string, willPayload []byte, user, pass string) []byte {
	var body []byte
	body = appendString(body, "MQTT")
	level := byte(4)
	if v5 {
		level = 5
	}
	flags := byte(0x02) // clean session
	if willTopic != "" {
		flags |= 0x04 | 0x08 // will, QoS 1
	}
	if user != "" {
		flags |= 0x80 | 0x40 // user name, password
	}
	body = append(body, level, flags, 0, 60) // keepalive 60
	if v5 {
		body = append(body, 0) // no properties
	}
	body = appendString(body, id)
	if willTopic != "" {
		if v5 {
			body = append(body, 0) // no will properties
		}
		body = appendString(body, willTopic)
		body = appendString(body, string(willPayload))
	}
	if user != "" {
		body = appendString(body, user)
		body = appendString(body, pass)
	}
	return body
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendVarint(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func (rc *rawClient) packet(header byte, body []byte) []byte {
	return append(appendVarint([]byte{header}, len(body)), body...)
}

func (rc *rawClient) send(header byte, body []byte) {
	rc.t.Helper()
	if _, err := rc.c.Write(rc.packet(header, body)); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// publish builds a QoS 1 PUBLISH packet.
func (rc *rawClient) publish(topic string, id uint16, payload []byte) []byte {
	return rc.publishQoS(topic, 1, id, payload)
}

// publishQoS builds a PUBLISH packet at qos (id is left out at QoS 0).
func (rc *rawClient) publishQoS(topic string, qos byte, id uint16, payload []byte) []byte {
	var body []byte
	body = appendString(body, topic)
	if qos > 0 {
		body = binary.BigEndian.AppendUint16(body, id)
	}
	if rc.v5 {
		body = append(body, 0)
	}
	body = append(body, payload...)
	return rc.packet(0x30|qos<<1, body)
}

// read returns the next packet's type nibble<<4 and body; on a closed
// connection it returns type 0.
func (rc *rawClient) read() (byte, []byte) {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return rc.readNoDeadline()
}

// readNoDeadline is read with the deadline the caller set.
func (rc *rawClient) readNoDeadline() (byte, []byte) {
	h, err := rc.r.ReadByte()
	if err != nil {
		return 0, nil
	}
	n, mul := 0, 1
	for {
		b, err := rc.r.ReadByte()
		if err != nil {
			return 0, nil
		}
		n += int(b&0x7f) * mul
		mul *= 128
		if b&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(rc.r, body); err != nil {
		return 0, nil
	}
	return h & 0xf0, body
}

// closed as an expected refusal means: the connection ends, with or
// without a DISCONNECT.
const closed = 0

// expectRefused reads until the connection ends; for MQTT 5 it wants a
// DISCONNECT with reason code want first (unless want is closed).
func (rc *rawClient) expectRefused(want byte) {
	rc.t.Helper()
	for {
		typ, body := rc.read()
		switch typ {
		case 0:
			if rc.v5 && want != closed {
				rc.t.Fatalf("connection closed without DISCONNECT 0x%x", want)
			}
			return
		case 0xe0:
			if !rc.v5 {
				rc.t.Fatalf("MQTT 3.1.1 server sent DISCONNECT")
			}
			if want != closed && (len(body) == 0 || body[0] != want) {
				rc.t.Fatalf("DISCONNECT reason %v, want 0x%x", body, want)
			}
			return
		case 0x40:
			continue // acks of earlier publishes
		default:
			rc.t.Fatalf("unexpected packet 0x%x %v while waiting for refusal", typ, body)
		}
	}
}

func (rc *rawClient) String() string { return fmt.Sprintf("raw(v5=%v)", rc.v5) }
