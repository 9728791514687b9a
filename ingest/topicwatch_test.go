package ingest

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// packetStream decodes b as MQTT packets the simple way (whole buffer)
// and reports whether a PUBLISH topic in it contains NUL: the reference
// for framing.scan, which sees the stream in pieces.
func packetStream(b []byte) (nul bool) {
	for len(b) > 0 {
		typ := b[0] >> 4
		b = b[1:]
		n, shift := 0, 0
		for {
			if len(b) == 0 {
				return nul
			}
			c := b[0]
			b = b[1:]
			n |= int(c&0x7f) << shift
			shift += 7
			if c&0x80 == 0 {
				break
			}
			if shift >= 28 {
				return nul
			}
		}
		body := b[:min(n, len(b))]
		b = b[len(body):]
		if typ == packets.Publish && len(body) >= 2 {
			tl := int(binary.BigEndian.Uint16(body))
			if bytes.IndexByte(body[2:min(2+tl, len(body))], 0) >= 0 {
				nul = true
			}
		}
	}
	return nul
}

func testPacket(header byte, body []byte) []byte {
	return append(appendVarint([]byte{header}, len(body)), body...)
}

func testPublish(topic string, payload string) []byte {
	return testPacket(0x30, append(appendString(nil, topic), payload...))
}

func TestFramingFindsNULTopics(t *testing.T) {
	ping := []byte{0xc0, 0}
	tests := []struct {
		name   string
		stream []byte
		nul    bool
	}{
		{"clean publishes", append(testPublish("a/b", "x\x00y"), testPublish("c", "")...), false},
		{"NUL in the payload only", testPublish("a", "\x00\x00"), false},
		{"NUL in the topic", testPublish("a/\x00", "p"), true},
		{"NUL topic after others", append(append(ping, testPublish("ok", "\x00")...), testPublish("\x00", "")...), true},
		{"long payload then NUL topic", append(testPublish("t", string(bytes.Repeat([]byte{0}, 300))), testPublish("x\x00", "")...), true},
		{"NUL in a subscribe filter", testPacket(0x82, append([]byte{0, 1}, appendString(nil, "a\x00")...)), false},
	}
	for _, tt := range tests {
		for _, size := range []int{1, 2, 3, 7, 1 << 20} {
			var f framing
			got := false
			for b := tt.stream; len(b) > 0; {
				k := min(size, len(b))
				got = f.scan(b[:k]) || got
				b = b[k:]
			}
			if got != tt.nul || packetStream(tt.stream) != tt.nul {
				t.Errorf("%s in pieces of %d: NUL topic %v, want %v", tt.name, size, got, tt.nul)
			}
		}
	}
}

// FuzzFraming: framing.scan over a stream cut in two anywhere agrees
// with a whole-buffer decode.
func FuzzFraming(f *testing.F) {
	f.Add(append(testPublish("a/b", "x"), testPublish("a\x00", "")...), 3)
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0x7f, 0, 1, 0}, 1)
	f.Add(testPacket(0x82, []byte{0, 1, 0, 1, 0}), 2)
	f.Fuzz(func(t *testing.T, stream []byte, cut int) {
		if cut < 0 {
			cut = -cut
		}
		cut = min(cut, len(stream))
		var fr framing
		got := fr.scan(stream[:cut])
		got = fr.scan(stream[cut:]) || got
		if want := packetStream(stream); got != want {
			t.Fatalf("scan %v, whole-buffer decode %v", got, want)
		}
	})
}
