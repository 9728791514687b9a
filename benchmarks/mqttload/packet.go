package mqttload

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// MQTT 3.1.1 control packet types (high nibble of the first byte).
const (
	typeConnect    = 1
	typeConnack    = 2
	typePublish    = 3
	typePuback     = 4
	typeSubscribe  = 8
	typeSuback     = 9
	typePingreq    = 12
	typePingresp   = 13
	typeDisconnect = 14
)

// maxRemainingLength is the largest value the 4-byte varint can carry.
const maxRemainingLength = 268435455

// errMalformed marks a packet that breaks MQTT 3.1.1 framing.
var errMalformed = errors.New("malformed MQTT packet")

var packetNames = [16]string{
	"reserved(0)", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
	"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "reserved(15)",
}

var connackReasons = map[byte]string{
	1: "unacceptable protocol version",
	2: "identifier rejected",
	3: "server unavailable",
	4: "bad user name or password",
	5: "not authorized",
}

// appendRemainingLength appends n as an MQTT variable byte integer.
func appendRemainingLength(b []byte, n int) []byte {
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

// appendString appends an MQTT UTF-8 string (2-byte length prefix).
func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func checkString(what, s string) error {
	if len(s) > 65535 {
		return fmt.Errorf("%s is %d bytes, longer than MQTT's 65535", what, len(s))
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	}
	return nil
}

// connectPacket encodes an MQTT 3.1.1 CONNECT with a clean session.
func connectPacket(clientID, username, password string, keepaliveSec uint16) ([]byte, error) {
	if err := checkString("client id", clientID); err != nil {
		return nil, err
	}
	if err := checkString("username", username); err != nil {
		return nil, err
	}
	flags := byte(0x02) // clean session
	body := make([]byte, 0, 32+len(clientID)+len(username)+len(password))
	body = appendString(body, "MQTT")
	body = append(body, 4) // protocol level 3.1.1
	if username != "" {
		flags |= 0x80
		if password != "" {
			flags |= 0x40
		}
	}
	body = append(body, flags)
	body = binary.BigEndian.AppendUint16(body, keepaliveSec)
	body = appendString(body, clientID)
	if username != "" {
		body = appendString(body, username)
		if password != "" {
			body = appendString(body, password)
		}
	}
	pkt := []byte{typeConnect << 4}
	pkt = appendRemainingLength(pkt, len(body))
	return append(pkt, body...), nil
}

// subscribePacket encodes a SUBSCRIBE for one filter.
func subscribePacket(id uint16, filter string, qos byte) ([]byte, error) {
	if err := checkString("topic filter", filter); err != nil {
		return nil, err
	}
	if filter == "" {
		return nil, errors.New("empty topic filter")
	}
	body := binary.BigEndian.AppendUint16(nil, id)
	body = appendString(body, filter)
	body = append(body, qos)
	pkt := []byte{typeSubscribe<<4 | 0x02}
	pkt = appendRemainingLength(pkt, len(body))
	return append(pkt, body...), nil
}

// publishTemplate is a prebuilt PUBLISH packet whose packet id and payload
// counters are rewritten in place for every message.
type publishTemplate struct {
	pkt     []byte
	idOff   int // offset of the 2-byte packet id, -1 at QoS 0
	payload payloadTemplate
}

// newPublishTemplate builds the PUBLISH template for one connection.
func newPublishTemplate(topic string, qos byte, size, conn int) (publishTemplate, error) {
	if err := checkString("topic", topic); err != nil {
		return publishTemplate{}, err
	}
	pl, err := newPayload(size, conn)
	if err != nil {
		return publishTemplate{}, err
	}
	rl := 2 + len(topic) + len(pl.buf)
	if qos > 0 {
		rl += 2
	}
	if rl > maxRemainingLength {
		return publishTemplate{}, fmt.Errorf("publish of %d bytes exceeds MQTT's maximum", rl)
	}
	pkt := []byte{typePublish<<4 | qos<<1}
	pkt = appendRemainingLength(pkt, rl)
	pkt = appendString(pkt, topic)
	t := publishTemplate{idOff: -1}
	if qos > 0 {
		t.idOff = len(pkt)
		pkt = append(pkt, 0, 0)
	}
	payloadOff := len(pkt)
	pkt = append(pkt, pl.buf...)
	// Make the payload template write straight into the packet.
	pl.buf = pkt[payloadOff:]
	t.pkt = pkt
	t.payload = pl
	return t, nil
}

// set rewrites the packet id and the payload's sequence number.
func (t *publishTemplate) set(id uint16, seq uint64) {
	if t.idOff >= 0 {
		binary.BigEndian.PutUint16(t.pkt[t.idOff:], id)
	}
	t.payload.set(seq)
}

// packetReader reads MQTT control packets from a buffered stream without
// allocating. A body returned by next is valid until the following call.
type packetReader struct {
	r *bufio.Reader
}

// next returns the first byte of the next packet (type and flags) and its
// body. Bodies larger than the reader's buffer are rejected.
func (p packetReader) next() (header byte, body []byte, err error) {
	header, err = p.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, err := readRemainingLength(p.r)
	if err != nil {
		return header, nil, err
	}
	if n > p.r.Size() {
		return header, nil, fmt.Errorf("%w: %s of %d bytes exceeds the %d-byte read buffer", errMalformed, packetNames[header>>4], n, p.r.Size())
	}
	body, err = p.r.Peek(n)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return header, nil, err
	}
	_, _ = p.r.Discard(n)
	return header, body, nil
}

// readRemainingLength decodes an MQTT variable byte integer.
func readRemainingLength(r io.ByteReader) (int, error) {
	n, mult := 0, 1
	for i := 0; i < 4; i++ {
		b, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		n += int(b&0x7f) * mult
		if b&0x80 == 0 {
			return n, nil
		}
		mult *= 128
	}
	return 0, fmt.Errorf("%w: remaining length longer than 4 bytes", errMalformed)
}

// parseConnack checks a CONNACK and returns nil when the connection was
// accepted.
func parseConnack(header byte, body []byte) error {
	if header != typeConnack<<4 {
		return fmt.Errorf("%w: expected CONNACK, got %s (first byte 0x%02x)", errMalformed, packetNames[header>>4], header)
	}
	if len(body) != 2 {
		return fmt.Errorf("%w: CONNACK with %d-byte body, want 2", errMalformed, len(body))
	}
	if rc := body[1]; rc != 0 {
		reason, ok := connackReasons[rc]
		if !ok {
			reason = "unknown reason"
		}
		return fmt.Errorf("broker refused the connection: CONNACK return code %d (%s)", rc, reason)
	}
	return nil
}

// parsePuback returns the packet id of a PUBACK.
func parsePuback(header byte, body []byte) (uint16, error) {
	if header != typePuback<<4 || len(body) != 2 {
		return 0, fmt.Errorf("%w: PUBACK with first byte 0x%02x and %d-byte body", errMalformed, header, len(body))
	}
	return binary.BigEndian.Uint16(body), nil
}

// parseSuback returns the granted QoS of a one-filter SUBACK.
func parseSuback(header byte, body []byte, wantID uint16) (byte, error) {
	if header != typeSuback<<4 {
		return 0, fmt.Errorf("%w: expected SUBACK, got %s (first byte 0x%02x)", errMalformed, packetNames[header>>4], header)
	}
	if len(body) != 3 {
		return 0, fmt.Errorf("%w: SUBACK with %d-byte body, want 3", errMalformed, len(body))
	}
	if id := binary.BigEndian.Uint16(body); id != wantID {
		return 0, fmt.Errorf("%w: SUBACK for packet id %d, want %d", errMalformed, id, wantID)
	}
	if body[2] == 0x80 {
		return 0, errors.New("broker refused the subscription (SUBACK return code 0x80)")
	}
	if body[2] > 2 {
		return 0, fmt.Errorf("%w: SUBACK return code 0x%02x", errMalformed, body[2])
	}
	return body[2], nil
}

// parsePublish returns the QoS and packet id of an incoming PUBLISH.
func parsePublish(header byte, body []byte) (qos byte, id uint16, err error) {
	qos = header >> 1 & 0x03
	if qos > 2 {
		return 0, 0, fmt.Errorf("%w: PUBLISH with QoS 3", errMalformed)
	}
	if len(body) < 2 {
		return 0, 0, fmt.Errorf("%w: PUBLISH shorter than its topic length", errMalformed)
	}
	tl := int(binary.BigEndian.Uint16(body))
	need := 2 + tl
	if qos > 0 {
		need += 2
	}
	if len(body) < need {
		return 0, 0, fmt.Errorf("%w: PUBLISH topic of %d bytes overruns a %d-byte body", errMalformed, tl, len(body))
	}
	if qos > 0 {
		id = binary.BigEndian.Uint16(body[2+tl:])
	}
	return qos, id, nil
}

var disconnectPacket = []byte{typeDisconnect << 4, 0}

// appendPuback appends a PUBACK for id.
func appendPuback(b []byte, id uint16) []byte {
	return append(b, typePuback<<4, 2, byte(id>>8), byte(id))
}
