package ingest

import (
	"bytes"
	"net"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// topicWatch wraps a client's connection to give an MQTT 5 client the
// DISCONNECT 0x90 Topic Name invalid for a PUBLISH topic with NUL, which
// mochi-mqtt cannot send: its decoder takes such a packet as malformed
// and closes the connection before any hook sees it. topicWatch follows
// the framing of what the client sends (fixed headers, lengths and each
// PUBLISH's topic; nothing is copied) and, when mochi then closes the
// connection, writes that DISCONNECT first, unless one was written.
type topicWatch struct {
	net.Conn
	// v5 is set at CONNECT (OnConnect) for an MQTT 5 client.
	v5 atomic.Bool
	// nul is set when a PUBLISH topic with NUL went by.
	nul atomic.Bool
	// disconnected is set when a DISCONNECT was written.
	disconnected atomic.Bool
	f            framing // used by Read only (mochi's read goroutine)
	// ident is who the connection authenticated as (set at CONNECT):
	// every listener's connection is a topicWatch, so it travels with
	// the connection.
	ident atomic.Pointer[identity]
}

func (w *topicWatch) Read(b []byte) (int, error) {
	n, err := w.Conn.Read(b)
	if n > 0 && w.f.scan(b[:n]) {
		w.nul.Store(true)
	}
	return n, err
}

func (w *topicWatch) Write(b []byte) (int, error) {
	if len(b) > 0 && b[0]>>4 == packets.Disconnect {
		w.disconnected.Store(true) // mochi and ingest write one packet (or PUBACKs) per Write
	}
	return w.Conn.Write(b)
}

// nulDisconnect is an MQTT 5 DISCONNECT, 0x90, with a reason string.
var nulDisconnect = func() []byte {
	const reason = "topic contains NUL"
	b := []byte{packets.Disconnect << 4, byte(2 + 3 + len(reason)), packets.ErrTopicNameInvalid.Code, byte(3 + len(reason)), 0x1f, 0, byte(len(reason))}
	return append(b, reason...)
}()

func (w *topicWatch) Close() error {
	if w.nul.Load() && w.v5.Load() && !w.disconnected.Load() {
		_ = w.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = w.Conn.Write(nulDisconnect)
	}
	return w.Conn.Close()
}

// watchListener wraps every accepted connection in a topicWatch.
type watchListener struct{ net.Listener }

func (l watchListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &topicWatch{Conn: c}, nil
}

// framing follows MQTT packet boundaries in a byte stream fed in pieces
// of any size, and reports a PUBLISH topic containing NUL.
type framing struct {
	state   uint8
	publish bool // the current packet is a PUBLISH
	shift   uint // of the next remaining-length byte
	n       int  // remaining length of the packet, then bytes left to skip
	topic   int  // topic bytes left to look at
	lenHi   byte // first byte of the topic length
}

const (
	frHeader   = iota // expecting a fixed header byte
	frLength          // in the remaining length
	frTopicLen        // expecting the first byte of a PUBLISH's topic length
	frTopicLo         // expecting its second byte
	frTopic           // in a PUBLISH's topic
	frSkip            // skipping the rest of a packet
)

// scan feeds b and reports whether a PUBLISH topic in it contains NUL.
func (f *framing) scan(b []byte) bool {
	nul := false
	for len(b) > 0 {
		switch f.state {
		case frHeader:
			f.publish = b[0]>>4 == packets.Publish
			f.state, f.shift, f.n = frLength, 0, 0
			b = b[1:]
		case frLength:
			f.n |= int(b[0]&0x7f) << f.shift
			f.shift += 7
			more := b[0]&0x80 != 0
			b = b[1:]
			switch {
			case more && f.shift >= 28:
				f.state = frSkip // malformed: mochi closes; nothing to follow
				f.n = 1 << 30
			case more:
			case f.publish:
				f.state = frTopicLen
			default:
				f.state = frSkip
			}
		case frTopicLen, frTopicLo:
			if f.n == 0 {
				f.state = frHeader
				continue
			}
			f.n--
			if f.state == frTopicLen {
				f.lenHi, f.state = b[0], frTopicLo
			} else {
				f.topic, f.state = int(f.lenHi)<<8|int(b[0]), frTopic
			}
			b = b[1:]
		case frTopic:
			k := min(f.topic, f.n, len(b))
			if bytes.IndexByte(b[:k], 0) >= 0 {
				nul = true
			}
			f.topic -= k
			f.n -= k
			b = b[k:]
			if f.topic == 0 || f.n == 0 {
				f.state = frSkip
			}
		case frSkip:
			k := min(f.n, len(b))
			f.n -= k
			b = b[k:]
		}
		if f.state == frSkip && f.n == 0 {
			f.state = frHeader
		}
	}
	return nul
}
