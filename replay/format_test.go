package replay

import (
	"bytes"
	"encoding/base64"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/segmentio/encoding/json"

	"github.com/iotpipe/iotpipe/rulesql/ruletest"
	"github.com/iotpipe/iotpipe/rulesql/value"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/iotpipe/iotpipe/schemas/payload"
)

// roundTrip encodes p as iotpipe events --json does and reads it back as
// rules test does; it returns what the rules see.
func roundTrip(t testing.TB, p []byte) (raw []byte, decoded any, line []byte) {
	t.Helper()
	e := &Event{Partition: 2, Offset: 9, Thing: "th", Payload: p,
		Envelope: schemas.Envelope{Type: schemas.EventPublish, Topic: "a/b", ClientID: "c", Principal: "pr", QoS: 1, ReceivedAt: t0.UnixNano() + 123}}
	line, err := AppendJSON(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(line, []byte("\n")) != 1 || line[len(line)-1] != '\n' {
		t.Fatalf("not one line: %q", line)
	}
	var in ruletest.Event
	if err := json.Unmarshal(line, &in); err != nil {
		t.Fatalf("rules test cannot read %s: %v", line, err)
	}
	ri, err := in.Input(time.Now())
	if err != nil {
		t.Fatalf("rules test input %s: %v", line, err)
	}
	if ri.Topic != "a/b" || ri.ClientID != "c" || ri.Principal != "pr" || ri.Thing != "th" || ri.Timestamp != t0.UnixMilli() ||
		ri.Partition != 2 || ri.Offset != 9 || !ruletest.Routable(in.Type) {
		t.Errorf("input %+v from %s", ri, line)
	}
	return ri.Raw, ri.Payload, line
}

// TestEventsJSONIsRulesTestInput: every payload iotpipe events --json
// writes reads back in rules test as the stream's rules see it (the same
// bytes for encode(*), the same decoded value), whatever its shape.
func TestEventsJSONIsRulesTestInput(t *testing.T) {
	payloads := []string{
		`{"temperature":55,"nested":{"a":[1,2.5,"x"]}}`,
		`[1,2,3]`, `42`, `true`, `null`,
		`"a JSON string"`,
		` {"padded": true} `,
		"{\n  \"pretty\": true\n}",
		`plain text, not JSON`,
		"tab\tand unicode é ✓",
		"\x00\x01binary\xff\xfe",
		`{"html":"<b>&</b>"}`,
		`{"broken": `,
	}
	for _, p := range payloads {
		raw, got, line := roundTrip(t, []byte(p))
		if !bytes.Equal(raw, []byte(p)) && !strings.Contains(string(line), "payload_base64") {
			t.Errorf("payload %q: rules test raw %q (line %s)", p, raw, line)
		}
		want, err := payload.Decode([]byte(p))
		if err != nil {
			want = value.Undefined
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("payload %q: rules test decodes %#v, the stream %#v (line %s)", p, got, want, line)
		}
	}
	_, _, line := roundTrip(t, []byte("\xff"))
	var l eventLine
	if err := json.Unmarshal(line, &l); err != nil {
		t.Fatal(err)
	}
	if b, _ := base64.StdEncoding.DecodeString(l.PayloadBase64); string(b) != "\xff" {
		t.Errorf("binary payload: payload_base64 %q", l.PayloadBase64)
	}
}

func FuzzEventsJSON(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `"s"`, " 1", "x\ny", "\xff", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		raw, got, line := roundTrip(t, p)
		if !utf8.Valid(p) {
			return // not a JSON string: exact only through payload_base64
		}
		if !bytes.Equal(raw, p) && !(len(p) == 0 && len(raw) == 0) {
			t.Errorf("payload %q: rules test raw %q (line %s)", p, raw, line)
		}
		want, err := payload.Decode(p)
		if err != nil {
			want = value.Undefined
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("payload %q: rules test decodes %#v, the stream %#v", p, got, want)
		}
	})
}

func TestAppendText(t *testing.T) {
	e := &Event{Partition: 1, Offset: 7, Thing: "lamp", Payload: []byte(`{"on":true}`),
		Envelope: schemas.Envelope{Type: schemas.EventPublish, Topic: "home/lamp", ClientID: "gw-1", QoS: 1, Retain: true, ReceivedAt: t0.UnixNano()}}
	want := "2026-03-01T12:00:00.000000Z  1/7  publish      lamp (client gw-1)  home/lamp  qos=1 retain  {\"on\":true}\n"
	if got := string(AppendText(nil, e)); got != want {
		t.Errorf("text\n%q\nwant\n%q", got, want)
	}
	e.Payload = []byte("a\nb")
	if got := string(AppendText(nil, e)); !strings.HasSuffix(got, "  \"a\\nb\"\n") {
		t.Errorf("control characters not quoted: %q", got)
	}
	e.Payload = []byte{0xff}
	if got := string(AppendText(nil, e)); !strings.HasSuffix(got, "  base64:/w==\n") {
		t.Errorf("binary: %q", got)
	}
}
