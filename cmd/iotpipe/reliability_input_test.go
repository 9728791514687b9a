package main

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/benchmarks/reliability"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/segmentio/encoding/json"
)

// badInput is one bad input of issue 21 the suite sends while the load
// publishes: how it is sent and what iotpipe must answer.
type badInput struct {
	name string
	// send sends it as client (a fresh client id) and returns the
	// answer as the table says it ("PUBACK 0x87", "HTTP 400", ...).
	send func(r *relRig, client string) string
	want string
	// logged inputs reach the log (and go on to a rejection or the
	// DLQ); the others must leave no publish in it.
	logged bool
	// then, when set, checks where a logged input went once the rest is
	// verified, and says it.
	then func(r *relRig, client string) string
}

// The far-future event time of the year 2100, in ms.
const year2100 = 4102444800000

var badInputs = []badInput{
	{name: "payload over --max-payload (128 KiB + 1)", want: "DISCONNECT 0x95",
		send: mqttAnswer("rel-bad/x", 1, make([]byte, 128<<10+1))},
	{name: "topic with a wildcard", want: "DISCONNECT 0x90", send: mqttAnswer("rel-bad/+/x", 1, []byte("{}"))},
	{name: "topic of 257 bytes", want: "DISCONNECT 0x90", send: mqttAnswer(strings.Repeat("t", 257), 1, []byte("{}"))},
	{name: "topic with 8 slashes", want: "DISCONNECT 0x90", send: mqttAnswer("a/b/c/d/e/f/g/h/i", 1, []byte("{}"))},
	{name: "NUL in the topic", want: "DISCONNECT 0x90", send: mqttAnswer("rel-bad/\x00x", 1, []byte("{}"))},
	{name: "topic not UTF-8", want: "closed", send: mqttAnswer("rel-bad/\xff\xfe", 1, []byte("{}"))},
	{name: "malformed packet (remaining length)", want: "closed", send: func(r *relRig, client string) string {
		c := r.dial(client)
		defer c.Close()
		c.WriteRaw([]byte{0x32, 0xff, 0xff, 0xff, 0xff, 0x7f})
		return r.await(c, packets.Puback, packets.Disconnect)
	}},
	{name: "client id with +", want: "CONNACK 0x85", send: connectAnswer("bad+plus", "")},
	{name: "client id with #", want: "CONNACK 0x85", send: connectAnswer("bad#hash", "")},
	{name: "client id of 129 bytes", want: "CONNACK 0x85", send: connectAnswer(strings.Repeat("b", 129), "")},
	{name: "Will on a reserved topic", want: "CONNACK 0x87", send: connectAnswer("", "$aws/events/presence/connected/someone")},
	{name: "presence forgery ($aws/events/presence/...), QoS 1", want: "PUBACK 0x87",
		send: mqttAnswer("$aws/events/presence/connected/rel-00", 1, []byte(`{"eventType":"connected"}`))},
	{name: "shadow response forgery (.../update/accepted), QoS 1", want: "PUBACK 0x87",
		send: mqttAnswer("$aws/things/rel-00/shadow/update/accepted", 1, []byte(`{"version":99}`))},
	{name: "$SYS publish, QoS 1", want: "PUBACK 0x87", send: mqttAnswer("$SYS/broker/x", 1, []byte("1"))},
	{name: "reserved topic, QoS 0", want: "DISCONNECT 0x87", send: mqttAnswer("$aws/events/presence/connected/rel-01", 0, []byte("{}"))},
	{name: "second connection with a connected client id", want: "DISCONNECT 0x8e", send: func(r *relRig, client string) string {
		first := r.dial(client)
		defer first.Close()
		second := r.dial(client)
		defer second.Close()
		return r.await(first, packets.Disconnect)
	}},
	{name: "HTTP publish over --max-payload", want: "HTTP 413", send: httpAnswer("POST", "/topics/rel-bad/x", strings.Repeat("x", 128<<10+1))},
	{name: "HTTP publish to a reserved topic", want: "HTTP 403", send: httpAnswer("POST", "/topics/$aws/events/presence/connected/rel-00", "{}")},
	{name: "HTTP publish, X-Client-Id with #", want: "HTTP 400", send: func(r *relRig, client string) string {
		return httpAnswer("POST", "/topics/rel-bad/x", "{}")(r, client+"#")
	}},
	{name: "malformed JSON to a shadow (MQTT)", want: "rejected 400", logged: true, send: func(r *relRig, client string) string {
		c := r.dial(client)
		defer c.Close()
		c.Subscribe(1, "$aws/things/"+client+"/shadow/update/rejected", 1)
		if a := r.await(c, packets.Suback); a != "SUBACK 0x00" {
			return "subscribe: " + a
		}
		c.Publish("$aws/things/"+client+"/shadow/update", 1, 2, []byte(`{"state":{"reported":`))
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			pk, err := c.Read()
			if err != nil {
				return "no rejection: " + err.Error()
			}
			if pk.FixedHeader.Type == packets.Publish {
				var e struct{ Code int }
				json.Unmarshal(pk.Payload, &e)
				return fmt.Sprintf("rejected %d", e.Code)
			}
		}
	}},
	{name: "malformed JSON to a shadow (HTTP)", want: "HTTP 400", logged: true, send: shadowAnswer(`{"state":{"reported":`)},
	{name: "1e999 in a shadow document", want: "HTTP 400", logged: true, send: shadowAnswer(`{"state":{"reported":{"x":1e999}}}`)},
	{name: "shadow state nested 7 deep", want: "HTTP 400", logged: true,
		send: shadowAnswer(`{"state":{"reported":{"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}`)},
	{name: "shadow update over 8 KiB", want: "HTTP 413", logged: true,
		send: shadowAnswer(`{"state":{"reported":{"x":"` + strings.Repeat("x", 8<<10) + `"}}}`)},
	{name: "event time in 2100 (a window rule's EVENT TIME)", want: "PUBACK 0x00", logged: true,
		send: func(r *relRig, client string) string {
			a := mqttAnswer("relts/"+client, 1, fmt.Appendf(nil, `{"ts":%d}`, year2100))(r, client)
			// Devices with sane clocks on every partition after it.
			for i := range 16 {
				mqttAnswer("relts/ontime", 1, fmt.Appendf(nil, `{"ts":%d}`, time.Now().UnixMilli()))(r, fmt.Sprintf("%s-ontime-%d", client, i))
			}
			return a
		},
		then: func(r *relRig, client string) string {
			for _, rec := range r.in.readTopic(schemas.DefaultTopics().DLQ) {
				if env, err := schemas.DecodeEnvelope(rec.Headers); err == nil && env.ClientID == client &&
					strings.Contains(recHeader(rec, "dlq.reason"), "past the receive time") {
					return "in the DLQ: " + recHeader(rec, "dlq.reason")
				}
			}
			r.t.Errorf("the event in 2100 of %s is not in the DLQ with the skew as its reason", client)
			return "not in the DLQ"
		}},
	{name: "unknown device's last-seen", want: "HTTP 404", send: func(r *relRig, client string) string {
		_, code := r.in.thing(client)
		return "HTTP " + strconv.Itoa(code)
	}},
	{name: "unknown device's shadow", want: "HTTP 404", logged: true, send: httpAnswer("GET", "/things/{client}/shadow", "")},
	{name: "payload that is not JSON", want: "PUBACK 0x00", logged: true, send: func(r *relRig, client string) string {
		return mqttAnswer("rel-raw/"+client, 1, []byte("not json \x01\x02"))(r, client)
	}, then: func(r *relRig, client string) string {
		if got := r.sql("SELECT length(metrics) FROM telemetry WHERE thing = '" + client + "'"); got != "0" {
			r.t.Errorf("the payload that is not JSON: telemetry metrics of %s: %q, want one row with none", client, got)
			return "row: " + got
		}
		return "a telemetry row with no metrics"
	}},
}

// relBadInputs sends every bad input while the load publishes: each
// gets its answer, nothing refused reaches the log, and the load loses
// nothing. One row per input (the load's figures during it), then one
// for all of them.
func relBadInputs(t *testing.T, m suiteMode) []reliability.Row {
	r := newRelRig(t, m, "")
	time.Sleep(2 * time.Second)
	type sent struct {
		from, to time.Time
		client   string
		answer   string
	}
	var done []sent
	for i, in := range badInputs {
		client := fmt.Sprintf("bad-%02d", i)
		from := time.Now()
		answer := in.send(r, client)
		time.Sleep(500 * time.Millisecond) // the load goes on around it
		done = append(done, sent{from, time.Now(), client, answer})
		if answer != in.want {
			t.Errorf("%s: answered %q, want %q", in.name, answer, in.want)
		}
	}
	time.Sleep(time.Second)
	r.load.Stop()
	v := r.verify("past the receive time")
	// Nothing an input refused at the door is in the log.
	refusedBy := map[string]string{}
	for i, in := range badInputs {
		if !in.logged {
			refusedBy[done[i].client] = in.name
		}
	}
	for _, rec := range r.in.readEvents() {
		env, err := schemas.DecodeEnvelope(rec.Headers)
		if err == nil && env.Type == schemas.EventPublish {
			if name, ok := refusedBy[strings.TrimSuffix(env.ClientID, "#")]; ok {
				t.Errorf("%s: a publish of %s reached the log (topic %q)", name, env.ClientID, env.Topic)
			}
		}
	}
	var rows []reliability.Row
	for i, in := range badInputs {
		d := done[i]
		notes := "answered " + d.answer
		if d.answer != in.want {
			notes += " (want " + in.want + ")"
		}
		switch {
		case in.then != nil:
			notes += "; " + in.then(r, d.client)
		case !in.logged:
			notes += "; nothing logged"
		}
		rows = append(rows, reliability.Row{Fault: in.name, Load: r.load.Describe(), Acknowledged: r.ledger.AckedBetween(d.from, d.to),
			Lost: v.check.LostBetween(d.from, d.to), Notes: notes})
	}
	return append(rows, r.row(fmt.Sprintf("all %d bad inputs above, one after another", len(badInputs)), v, 0))
}

// dial connects client or fails the test.
func (r *relRig) dial(client string) *reliability.Conn {
	r.t.Helper()
	c, code, err := reliability.Dial(fmt.Sprintf("127.0.0.1:%d", r.in.mqtt), reliability.ConnectOptions{ClientID: client})
	if err != nil || code != 0 {
		r.t.Fatalf("connect %s: 0x%02x %v", client, code, err)
	}
	return c
}

// await is the answer of types on c within 30 s, as the table says it.
func (r *relRig) await(c *reliability.Conn, types ...byte) string {
	a, err := c.Await(30*time.Second, types...)
	if err != nil {
		return err.Error()
	}
	return a.String()
}

// mqttAnswer publishes payload to topic at qos as a fresh client and
// returns the answer (PUBACK or DISCONNECT, or the connection closed).
func mqttAnswer(topic string, qos byte, payload []byte) func(*relRig, string) string {
	return func(r *relRig, client string) string {
		c := r.dial(client)
		defer c.Close()
		if err := c.Publish(topic, qos, 1, payload); err != nil {
			return "write: " + err.Error()
		}
		if qos == 0 {
			return r.await(c, packets.Disconnect)
		}
		return r.await(c, packets.Puback, packets.Disconnect)
	}
}

// connectAnswer connects with client id (the input's own when empty)
// and a Will on will (none when empty) and returns the CONNACK.
func connectAnswer(id, will string) func(*relRig, string) string {
	return func(r *relRig, client string) string {
		if id == "" {
			id = client
		}
		c, code, err := reliability.Dial(fmt.Sprintf("127.0.0.1:%d", r.in.mqtt), reliability.ConnectOptions{ClientID: id, WillTopic: will})
		if err != nil {
			return err.Error()
		}
		if code == 0 {
			c.Close()
		}
		return fmt.Sprintf("CONNACK 0x%02x", code)
	}
}

// httpAnswer sends an HTTP request as X-Client-Id client ({client} in
// path is replaced by it) and returns its status.
func httpAnswer(method, path, body string) func(*relRig, string) string {
	return func(r *relRig, client string) string {
		req, err := http.NewRequest(method, r.in.url(strings.ReplaceAll(path, "{client}", client)), strings.NewReader(body))
		if err != nil {
			return err.Error()
		}
		req.Header.Set("X-Client-Id", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
}

// shadowAnswer posts body to the shadow REST API of the thing named as
// the client and returns the status.
func shadowAnswer(body string) func(*relRig, string) string {
	return httpAnswer("POST", "/things/{client}/shadow", body)
}
