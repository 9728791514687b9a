package mqttload

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestRemainingLengthRoundTrip(t *testing.T) {
	tests := []struct {
		n    int
		want []byte
	}{
		{0, []byte{0x00}},
		{127, []byte{0x7f}},
		{128, []byte{0x80, 0x01}},
		{16383, []byte{0xff, 0x7f}},
		{16384, []byte{0x80, 0x80, 0x01}},
		{2097151, []byte{0xff, 0xff, 0x7f}},
		{2097152, []byte{0x80, 0x80, 0x80, 0x01}},
		{maxRemainingLength, []byte{0xff, 0xff, 0xff, 0x7f}},
	}
	for _, tt := range tests {
		got := appendRemainingLength(nil, tt.n)
		if !bytes.Equal(got, tt.want) {
			t.Errorf("appendRemainingLength(%d) = % x, want % x", tt.n, got, tt.want)
		}
		n, err := readRemainingLength(bytes.NewReader(got))
		if err != nil || n != tt.n {
			t.Errorf("readRemainingLength(% x) = %d, %v; want %d", got, n, err, tt.n)
		}
	}
	if _, err := readRemainingLength(bytes.NewReader([]byte{0x80, 0x80, 0x80, 0x80, 0x01})); !errors.Is(err, errMalformed) {
		t.Errorf("5-byte length: err %v, want errMalformed", err)
	}
	if _, err := readRemainingLength(bytes.NewReader([]byte{0x80})); err == nil {
		t.Error("truncated length: no error")
	}
}

func TestConnectPacket(t *testing.T) {
	tests := []struct {
		name, id, user, pass string
		keepalive            uint16
		want                 []byte
	}{
		{"anonymous", "c1", "", "", 60, []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 2, 'c', '1'}},
		{"user and password", "c", "u", "p", 10, []byte{0x10, 19, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xc2, 0, 10, 0, 1, 'c', 0, 1, 'u', 0, 1, 'p'}},
		{"user only", "c", "u", "", 0, []byte{0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x82, 0, 0, 0, 1, 'c', 0, 1, 'u'}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := connectPacket(tt.id, tt.user, tt.pass, tt.keepalive)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("got  % x\nwant % x", got, tt.want)
			}
		})
	}
	if _, err := connectPacket("bad\xff", "", "", 1); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("invalid UTF-8 client id: err %v", err)
	}
}

func TestSubscribePacket(t *testing.T) {
	got, err := subscribePacket(7, "a/#", 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x82, 8, 0, 7, 0, 3, 'a', '/', '#', 1}
	if !bytes.Equal(got, want) {
		t.Errorf("got % x, want % x", got, want)
	}
}

func TestPublishTemplate(t *testing.T) {
	for _, qos := range []byte{0, 1} {
		tmpl, err := newPublishTemplate("bench/3/telemetry", qos, 200, 3)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.set(513, 123456789)
		pr := packetReader{bufio.NewReader(bytes.NewReader(tmpl.pkt))}
		header, body, err := pr.next()
		if err != nil {
			t.Fatalf("qos %d: reading back: %v", qos, err)
		}
		if header != 0x30|qos<<1 {
			t.Errorf("qos %d: header 0x%02x", qos, header)
		}
		gotQoS, id, err := parsePublish(header, body)
		if err != nil || gotQoS != qos {
			t.Fatalf("qos %d: parsePublish = %d, %v", qos, gotQoS, err)
		}
		wantID := uint16(0)
		if qos == 1 {
			wantID = 513
		}
		if id != wantID {
			t.Errorf("qos %d: packet id %d, want %d", qos, id, wantID)
		}
		payload := body[2+len("bench/3/telemetry"):]
		if qos == 1 {
			payload = payload[2:]
		}
		if len(payload) != 200 || !bytes.Contains(payload, []byte(`"seq":`+strings.Repeat(" ", seqWidth-9)+"123456789,")) {
			t.Errorf("qos %d: payload (%d bytes) %s", qos, len(payload), payload)
		}
	}
}

func TestParseReplies(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		wantErr string
	}{
		{"connack ok", parseConnack(0x20, []byte{0, 0}), ""},
		{"connack session present", parseConnack(0x20, []byte{1, 0}), ""},
		{"connack refused", parseConnack(0x20, []byte{0, 4}), "bad user name or password"},
		{"connack unknown code", parseConnack(0x20, []byte{0, 9}), "unknown reason"},
		{"connack short", parseConnack(0x20, []byte{0}), "1-byte body"},
		{"not connack", parseConnack(0x40, []byte{0, 1}), "expected CONNACK, got PUBACK"},
		{"puback flags", errOnly(parsePuback(0x42, []byte{0, 1})), "PUBACK with first byte 0x42"},
		{"puback long", errOnly(parsePuback(0x40, []byte{0, 1, 0})), "3-byte body"},
		{"suback refused", errOnly(parseSuback(0x90, []byte{0, 1, 0x80}, 1)), "refused the subscription"},
		{"suback wrong id", errOnly(parseSuback(0x90, []byte{0, 2, 1}, 1)), "packet id 2, want 1"},
		{"suback ok", errOnly(parseSuback(0x90, []byte{0, 1, 1}, 1)), ""},
		{"publish qos 3", errOnly3(parsePublish(0x36, []byte{0, 0})), "QoS 3"},
		{"publish topic overrun", errOnly3(parsePublish(0x32, []byte{0, 9, 'a'})), "overruns"},
		{"publish empty", errOnly3(parsePublish(0x30, nil)), "shorter than its topic length"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantErr == "" {
				if tt.err != nil {
					t.Fatalf("unexpected error %v", tt.err)
				}
				return
			}
			if tt.err == nil || !strings.Contains(tt.err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", tt.err, tt.wantErr)
			}
		})
	}
}

func errOnly[T any](_ T, err error) error { return err }

func errOnly3[A, B any](_ A, _ B, err error) error { return err }

func TestPacketReaderRejectsOversizedBody(t *testing.T) {
	pkt := append([]byte{0x30}, appendRemainingLength(nil, 100000)...)
	pr := packetReader{bufio.NewReaderSize(bytes.NewReader(pkt), 4096)}
	if _, _, err := pr.next(); !errors.Is(err, errMalformed) {
		t.Fatalf("err %v, want errMalformed", err)
	}
}

// FuzzPacketReader feeds arbitrary bytes through the reader and every
// parser: they must return errors, never panic or over-read.
func FuzzPacketReader(f *testing.F) {
	f.Add([]byte{0x20, 0x02, 0x00, 0x00, 0x40, 0x02, 0x00, 0x01})
	f.Add([]byte{0x90, 0x03, 0x00, 0x01, 0x01, 0xd0, 0x00})
	f.Add([]byte{0x32, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x05, '{', '}'})
	f.Add([]byte{0x40, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Add([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pr := packetReader{bufio.NewReaderSize(bytes.NewReader(data), 64)}
		for i := 0; i < 100; i++ {
			header, body, err := pr.next()
			if err != nil {
				return
			}
			_ = parseConnack(header, body)
			_, _ = parsePuback(header, body)
			_, _ = parseSuback(header, body, 1)
			if qos, _, err := parsePublish(header, body); err == nil && qos > 2 {
				t.Fatalf("parsePublish accepted QoS %d", qos)
			}
		}
	})
}

// FuzzRemainingLength checks that every length the encoder produces
// decodes to itself.
func FuzzRemainingLength(f *testing.F) {
	for _, n := range []int{0, 127, 128, 16384, maxRemainingLength} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, n int) {
		if n < 0 || n > maxRemainingLength {
			return
		}
		b := appendRemainingLength(nil, n)
		got, err := readRemainingLength(bytes.NewReader(b))
		if err != nil || got != n || len(b) > 4 {
			t.Fatalf("%d encoded as % x decoded as %d, %v", n, b, got, err)
		}
	})
}
