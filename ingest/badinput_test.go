package ingest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
)

func TestBadInputRefusedOthersUnaffected(t *testing.T) {
	r := newRig(t, Options{MaxPayload: 1024})
	good := client(t, r.addr, "good-client", false)
	tests := []struct {
		name   string
		packet func(rc *rawClient) []byte
		code   byte
	}{
		// mochi's decoder treats invalid UTF-8 as a malformed packet and
		// closes the connection (MQTT 5 makes the DISCONNECT optional).
		{"invalid utf8 topic", func(rc *rawClient) []byte { return rc.publish("bad/\xff\xfe", 1, []byte("x")) }, closed},
		{"wildcard plus", func(rc *rawClient) []byte { return rc.publish("a/+/b", 1, []byte("x")) }, 0x90},
		{"wildcard hash", func(rc *rawClient) []byte { return rc.publish("a/#", 1, []byte("x")) }, 0x90},
		{"oversized payload", func(rc *rawClient) []byte { return rc.publish("a/b", 1, bytes.Repeat([]byte("x"), 2048)) }, 0x95},
		// Past the packet size limit mochi closes before decoding; the
		// malformed cases close too (MQTT 5 makes the DISCONNECT optional).
		{"oversized packet", func(rc *rawClient) []byte { return rc.publish("a/b", 1, bytes.Repeat([]byte("x"), 80<<10)) }, closed},
		{"malformed length", func(rc *rawClient) []byte { return []byte{0x32, 0xff, 0xff, 0xff, 0xff, 0x7f} }, closed},
		{"truncated topic", func(rc *rawClient) []byte { return rc.packet(0x32, []byte{0x00, 0x10, 'a'}) }, closed},
		{"reserved packet type", func(rc *rawClient) []byte { return []byte{0x00, 0x00} }, closed},
	}
	for i, tt := range tests {
		for _, v5 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/v5=%v", tt.name, v5), func(t *testing.T) {
				rc := dialRaw(t, r.addr, fmt.Sprintf("bad-%d-%v", i, v5), v5)
				if _, err := rc.c.Write(tt.packet(rc)); err != nil {
					t.Fatal(err)
				}
				rc.expectRefused(tt.code)
				// The well-behaved client still publishes and is acknowledged.
				tok := good.Publish("farm/ok", 1, false, fmt.Sprintf(`{"i":%d}`, i))
				if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					t.Fatalf("good client publish after %s: %v", tt.name, tok.Error())
				}
			})
		}
	}
	// Nothing a refused client sent reached the log.
	for _, rec := range r.readAll(t, r.log.Topics().Events, 1) {
		env, err := schemas.DecodeEnvelope(rec.Headers)
		if err != nil {
			t.Fatal(err)
		}
		if env.Type == schemas.EventPublish && env.ClientID != "good-client" {
			t.Errorf("refused publish logged: %+v", env)
		}
	}
}
