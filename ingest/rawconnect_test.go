package ingest

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
)

// connectOpts are the CONNECT fields the session tests vary.
type connectOpts struct {
	v5    bool
	clean bool
	// expiry is the MQTT 5 Session Expiry Interval in seconds (0: none sent).
	expiry uint32
}

// connectRaw dials addr and sends a CONNECT for id, returning the client
// and the CONNACK's body, or an error (never t.Fatal: it runs in
// goroutines).
func connectRaw(t *testing.T, addr, id string, o connectOpts) (*rawClient, []byte, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawClient{t: t, c: c, r: bufio.NewReader(c), v5: o.v5}
	var body []byte
	body = appendString(body, "MQTT")
	level, flags := byte(4), byte(0)
	if o.v5 {
		level = 5
	}
	if o.clean {
		flags = 0x02
	}
	body = append(body, level, flags, 0, 60) // keepalive 60
	if o.v5 {
		if o.expiry > 0 {
			body = append(body, 5, 0x11)
			body = binary.BigEndian.AppendUint32(body, o.expiry)
		} else {
			body = append(body, 0)
		}
	}
	body = appendString(body, id)
	if _, err := c.Write(rc.packet(0x10, body)); err != nil {
		return nil, nil, err
	}
	typ, ack := rc.read()
	if typ != 0x20 || len(ack) < 2 || ack[1] != 0 {
		return rc, ack, fmt.Errorf("client %s: want CONNACK 0, got 0x%x %v", id, typ, ack)
	}
	return rc, ack, nil
}

// alive sends a PINGREQ and reports whether a PINGRESP comes back (a
// connection the server closed answers EOF, after a DISCONNECT on MQTT 5).
func (rc *rawClient) alive() bool {
	if _, err := rc.c.Write([]byte{0xc0, 0}); err != nil {
		return false
	}
	for {
		switch typ, _ := rc.read(); typ {
		case 0xd0:
			return true
		case 0, 0xe0:
			return false
		}
	}
}

// subscribe subscribes to filter at QoS 1 and waits for the SUBACK.
func (rc *rawClient) subscribe(filter string, id uint16) {
	rc.t.Helper()
	body := binary.BigEndian.AppendUint16(nil, id)
	if rc.v5 {
		body = append(body, 0)
	}
	body = appendString(body, filter)
	body = append(body, 1)
	rc.send(0x82, body)
	for {
		typ, ack := rc.read()
		if typ == 0x90 {
			if ack[len(ack)-1] != 1 {
				rc.t.Fatalf("SUBACK %v", ack)
			}
			return
		}
		if typ == 0 {
			rc.t.Fatalf("connection closed while waiting for SUBACK")
		}
	}
}

// nextPublish reads until a PUBLISH arrives and returns its topic and
// payload (acknowledging QoS 1), or fails the test at the read deadline.
func (rc *rawClient) nextPublish() (string, string) {
	rc.t.Helper()
	for {
		h, err := rc.r.Peek(1)
		if err != nil {
			rc.t.Fatalf("no PUBLISH: %v", err)
		}
		qos := (h[0] >> 1) & 3
		typ, body := rc.read()
		switch typ {
		case 0:
			rc.t.Fatalf("connection closed while waiting for a PUBLISH")
		case 0x30:
			n := int(binary.BigEndian.Uint16(body))
			topic, rest := string(body[2:2+n]), body[2+n:]
			if qos > 0 {
				rc.send(0x40, rest[:2])
				rest = rest[2:]
			}
			if rc.v5 {
				plen, used := 0, 0
				for mul := 1; ; mul *= 128 {
					b := rest[used]
					used++
					plen += int(b&0x7f) * mul
					if b&0x80 == 0 {
						break
					}
				}
				rest = rest[used+plen:]
			}
			return topic, string(rest)
		}
	}
}
