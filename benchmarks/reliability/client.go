package reliability

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Conn is one MQTT 5 connection spoken with mochi-mqtt's packet codec: a
// device of a Load, or a client sending what a device never should.
// Writes may come from several goroutines; reads from one.
type Conn struct {
	c   net.Conn
	r   *bufio.Reader
	wmu sync.Mutex
	buf bytes.Buffer
}

// ConnectOptions is what a CONNECT carries.
type ConnectOptions struct {
	// ClientID is the client identifier.
	ClientID string
	// Keepalive is the keepalive in seconds. Default 60.
	Keepalive uint16
	// SessionExpiry asks for a persistent session of this many seconds
	// (clean start off); 0 is a clean session.
	SessionExpiry uint32
	// WillTopic, when set, adds a Will message on that topic.
	WillTopic string
	// Timeout bounds the dial and the CONNACK. Default 5s.
	Timeout time.Duration
}

// Dial connects to addr and sends CONNECT. It returns the connection and
// the CONNACK's reason code: 0 when the server accepted the client (the
// connection is then open), a refusal code otherwise (closed). An error
// means no CONNACK came.
func Dial(addr string, o ConnectOptions) (*Conn, byte, error) {
	if o.Keepalive == 0 {
		o.Keepalive = 60
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	nc, err := net.DialTimeout("tcp", addr, o.Timeout)
	if err != nil {
		return nil, 0, err
	}
	c := &Conn{c: nc, r: bufio.NewReader(nc)}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: o.SessionExpiry == 0,
			ClientIdentifier: o.ClientID, Keepalive: o.Keepalive},
	}
	if o.SessionExpiry > 0 {
		pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = o.SessionExpiry, true
	}
	if o.WillTopic != "" {
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload, pk.Connect.WillQos = true, o.WillTopic, []byte("gone"), 1
	}
	if err := c.Write(pk); err != nil {
		nc.Close()
		return nil, 0, err
	}
	nc.SetReadDeadline(time.Now().Add(o.Timeout))
	ack, err := c.Read()
	nc.SetReadDeadline(time.Time{})
	if err != nil {
		nc.Close()
		return nil, 0, fmt.Errorf("connect %s: %w", o.ClientID, err)
	}
	if ack.FixedHeader.Type != packets.Connack {
		nc.Close()
		return nil, 0, fmt.Errorf("connect %s: got %s instead of CONNACK", o.ClientID, typeName(ack.FixedHeader.Type))
	}
	if ack.ReasonCode != 0 {
		nc.Close()
	}
	return c, ack.ReasonCode, nil
}

// Write encodes pk as MQTT 5 and writes it.
func (c *Conn) Write(pk packets.Packet) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	pk.ProtocolVersion = 5
	c.buf.Reset()
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&c.buf)
	case packets.Publish:
		err = pk.PublishEncode(&c.buf)
	case packets.Puback:
		err = pk.PubackEncode(&c.buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&c.buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&c.buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&c.buf)
	default:
		err = fmt.Errorf("no encoder for %s", typeName(pk.FixedHeader.Type))
	}
	if err != nil {
		return err
	}
	_, err = c.c.Write(c.buf.Bytes())
	return err
}

// WriteRaw writes bytes as they are: a packet no encoder would make.
func (c *Conn) WriteRaw(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.c.Write(b)
	return err
}

// Publish writes a PUBLISH of payload to topic (id is its packet id,
// needed from QoS 1).
func (c *Conn) Publish(topic string, qos byte, id uint16, payload []byte) error {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, TopicName: topic, Payload: payload}
	if qos > 0 {
		pk.PacketID = id
	}
	return c.Write(pk)
}

// Subscribe writes a SUBSCRIBE of filter at qos (its SUBACK arrives
// through Read).
func (c *Conn) Subscribe(id uint16, filter string, qos byte) error {
	return c.Write(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id,
		Filters: packets.Subscriptions{{Filter: filter, Qos: qos}},
	})
}

// Read reads and decodes the next packet.
func (c *Conn) Read() (packets.Packet, error) {
	var pk packets.Packet
	hb, err := c.r.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(hb); err != nil {
		return pk, fmt.Errorf("fixed header 0x%02x: %w", hb, err)
	}
	n, _, err := packets.DecodeLength(c.r)
	if err != nil {
		return pk, fmt.Errorf("remaining length: %w", err)
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return pk, err
	}
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
	case packets.Pingresp:
	default:
		err = fmt.Errorf("unexpected %s from the server", typeName(pk.FixedHeader.Type))
	}
	return pk, err
}

// SetReadDeadline sets the deadline of the connection's reads.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Answer is how the server answered a client that did something: with a
// packet and its reason code, or by closing the connection.
type Answer struct {
	// Type is the packet type (packets.Puback, packets.Disconnect, ...),
	// 0 when the connection closed without one.
	Type byte
	// Code is the packet's reason code.
	Code byte
	// Reason is the packet's reason string, if it had one.
	Reason string
}

// Closed is the Answer of a server that closed the connection.
var Closed = Answer{}

// String says the answer as it is read in a table: "PUBACK 0x87",
// "DISCONNECT 0x95", "closed".
func (a Answer) String() string {
	if a.Type == 0 {
		return "closed"
	}
	return fmt.Sprintf("%s 0x%02x", typeName(a.Type), a.Code)
}

// Await reads until the server answers with a packet of one of types
// (other packets are skipped) or closes the connection, for at most
// timeout; it returns an error when neither happened in time.
func (c *Conn) Await(timeout time.Duration, types ...byte) (Answer, error) {
	c.c.SetReadDeadline(time.Now().Add(timeout))
	defer c.c.SetReadDeadline(time.Time{})
	for {
		pk, err := c.Read()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			return Answer{}, fmt.Errorf("no answer within %s", timeout)
		case err != nil:
			return Closed, nil
		}
		for _, t := range types {
			if pk.FixedHeader.Type == t {
				return Answer{Type: t, Code: pk.ReasonCode, Reason: pk.Properties.ReasonString}, nil
			}
		}
	}
}

// typeName is the name of an MQTT packet type.
func typeName(t byte) string {
	if n, ok := packets.PacketNames[t]; ok {
		return strings.ToUpper(n)
	}
	return fmt.Sprintf("packet type %d", t)
}
