package ingest

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	mochiauth "github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// startPlainMochi starts mochi-mqtt as it comes (allow-all, its own
// routing): the reference for what MQTT 5 routing honours.
func startPlainMochi(t *testing.T) string {
	t.Helper()
	ms := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := ms.AddHook(new(mochiauth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ms.AddListener(listeners.NewNet("plain", ln)); err != nil {
		t.Fatal(err)
	}
	if err := ms.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	return ln.Addr().String()
}

// MQTT 5 publish properties and subscription options survive iotpipe's
// own routing (log first, then route) as they do plain mochi-mqtt's:
// each row runs against both and must see what the row expects.
func TestMQTT5PropertiesRouted(t *testing.T) {
	brokers := map[string]string{"mochi": startPlainMochi(t), "iotpipe": newRig(t, Options{}).addr}
	sub := func(filter string) packets.Subscription { return packets.Subscription{Filter: filter, Qos: 1} }
	const wait = time.Second
	tests := []struct {
		name string
		// run publishes and subscribes on addr (client ids and topics
		// carry p, unique per broker and row) and returns what the
		// subscribers received.
		run  func(t *testing.T, addr, p string) []string
		want []string // {p} stands for p
	}{
		{"user properties", func(t *testing.T, addr, p string) []string {
			s := dialV5(t, addr, p+"-s", 0)
			s.subscribe(sub(p+"/t"), 0)
			dialV5(t, addr, p+"-p", 0).publish(p+"/t", "m", false, packets.Properties{User: []packets.UserProperty{{Key: "a", Val: "1"}, {Key: "b", Val: "2"}}})
			return s.received(wait)
		}, []string{`{p}/t "m" qos=1 retain=false user:a=1 user:b=2 expiry~86400`}},
		{"content type, response topic, correlation data, payload format", func(t *testing.T, addr, p string) []string {
			s := dialV5(t, addr, p+"-s", 0)
			s.subscribe(sub(p+"/t"), 0)
			dialV5(t, addr, p+"-p", 0).publish(p+"/t", "m", false, packets.Properties{
				ContentType: "application/json", ResponseTopic: p + "/reply", CorrelationData: []byte("c-1"),
				PayloadFormat: 1, PayloadFormatFlag: true,
			})
			return s.received(wait)
		}, []string{`{p}/t "m" qos=1 retain=false content-type=application/json response-topic={p}/reply correlation="c-1" payload-format=1 expiry~86400`}},
		{"message expiry: the remaining interval sent on", func(t *testing.T, addr, p string) []string {
			s := dialV5(t, addr, p+"-s", 0)
			s.subscribe(sub(p+"/t"), 0)
			dialV5(t, addr, p+"-p", 0).publish(p+"/t", "m", false, packets.Properties{MessageExpiryInterval: 60})
			return s.received(wait)
		}, []string{`{p}/t "m" qos=1 retain=false expiry~60`}},
		{"message expiry: not delivered from a session queue once expired", func(t *testing.T, addr, p string) []string {
			s := dialV5(t, addr, p+"-s", 300)
			s.subscribe(sub(p+"/t"), 0)
			s.disconnect()
			pub := dialV5(t, addr, p+"-p", 0)
			pub.publish(p+"/t", "expires", false, packets.Properties{MessageExpiryInterval: 1})
			pub.publish(p+"/t", "stays", false, packets.Properties{MessageExpiryInterval: 600})
			time.Sleep(4 * time.Second) // past the expiry and mochi's 1 s sweep
			return dialV5(t, addr, p+"-s", 300).received(wait)
		}, []string{`{p}/t "stays" qos=1 retain=false expiry~600`}},
		{"retained message keeps its properties", func(t *testing.T, addr, p string) []string {
			dialV5(t, addr, p+"-p", 0).publish(p+"/t", "r", true, packets.Properties{
				User: []packets.UserProperty{{Key: "a", Val: "1"}}, ContentType: "text/plain", PayloadFormat: 1, PayloadFormatFlag: true,
			})
			s := dialV5(t, addr, p+"-s", 0)
			s.subscribe(sub(p+"/t"), 0)
			return retainedOnly(s.received(wait))
		}, []string{`{p}/t "r" qos=1 retain=true user:a=1 content-type=text/plain payload-format=1 expiry~86400`}},
		{"retained message expires", func(t *testing.T, addr, p string) []string {
			pub := dialV5(t, addr, p+"-p", 0)
			pub.publish(p+"/a", "expires", true, packets.Properties{MessageExpiryInterval: 1})
			pub.publish(p+"/b", "stays", true, packets.Properties{MessageExpiryInterval: 600})
			time.Sleep(4 * time.Second)
			s := dialV5(t, addr, p+"-s", 0)
			s.subscribe(sub(p+"/#"), 0)
			return s.received(wait)
		}, []string{`{p}/b "stays" qos=1 retain=true expiry~600`}},
		{"subscription identifier", func(t *testing.T, addr, p string) []string {
			s := dialV5(t, addr, p+"-s", 0)
			s.subscribe(sub(p+"/t"), 42)
			dialV5(t, addr, p+"-p", 0).publish(p+"/t", "m", false, packets.Properties{})
			return s.received(wait)
		}, []string{`{p}/t "m" qos=1 retain=false sub-ids=[42] expiry~86400`}},
		{"no local", func(t *testing.T, addr, p string) []string {
			pub := dialV5(t, addr, p+"-p", 0)
			pub.subscribe(packets.Subscription{Filter: p + "/t", Qos: 1, NoLocal: true}, 0)
			s := dialV5(t, addr, p+"-s", 0)
			s.subscribe(sub(p+"/t"), 0)
			pub.publish(p+"/t", "m", false, packets.Properties{})
			return append(prefix("publisher: ", pub.received(wait)), prefix("other: ", s.received(0))...)
		}, []string{`other: {p}/t "m" qos=1 retain=false expiry~86400`}},
		{"retain as published", func(t *testing.T, addr, p string) []string {
			rap := dialV5(t, addr, p+"-rap", 0)
			rap.subscribe(packets.Subscription{Filter: p + "/t", Qos: 1, RetainAsPublished: true}, 0)
			plain := dialV5(t, addr, p+"-plain", 0)
			plain.subscribe(sub(p+"/t"), 0)
			dialV5(t, addr, p+"-p", 0).publish(p+"/t", "m", true, packets.Properties{})
			return append(prefix("as published: ", rap.received(wait)), prefix("plain: ", plain.received(0))...)
		}, []string{`as published: {p}/t "m" qos=1 retain=true expiry~86400`, `plain: {p}/t "m" qos=1 retain=false expiry~86400`}},
		{"retain handling", func(t *testing.T, addr, p string) []string {
			dialV5(t, addr, p+"-p", 0).publish(p+"/t", "r", true, packets.Properties{})
			var out []string
			for _, rh := range []byte{0, 1, 2} {
				s := dialV5(t, addr, fmt.Sprintf("%s-s%d", p, rh), 0)
				s.subscribe(packets.Subscription{Filter: p + "/t", Qos: 1, RetainHandling: rh}, 0)
				s.subscribe(packets.Subscription{Filter: p + "/t", Qos: 1, RetainHandling: rh}, 0) // again: now it exists
				out = append(out, prefix(fmt.Sprintf("handling %d: ", rh), retainedOnly(s.received(wait)))...)
			}
			return out
		}, []string{
			`handling 0: {p}/t "r" qos=1 retain=true expiry~86400`, `handling 0: {p}/t "r" qos=1 retain=true expiry~86400`,
			`handling 1: {p}/t "r" qos=1 retain=true expiry~86400`,
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for name, addr := range brokers {
				p := fmt.Sprintf("r%d%s", i, name)
				got := tt.run(t, addr, p)
				want := slices.Clone(tt.want)
				for j := range want {
					want[j] = strings.ReplaceAll(want[j], "{p}", p)
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s:\n got  %q\n want %q", name, got, want)
				}
			}
		})
	}
}

// retainedOnly keeps the lines of retained messages sent on subscribing:
// mochi acknowledges a publish once it is retained but routes it live
// after, so a client subscribing in between gets both (iotpipe routes
// before it acknowledges).
func retainedOnly(lines []string) []string {
	return slices.DeleteFunc(lines, func(l string) bool { return !strings.Contains(l, " retain=true") })
}

func prefix(p string, lines []string) []string {
	for i := range lines {
		lines[i] = p + lines[i]
	}
	return lines
}

// A message whose expiry passes while the log has not yet acknowledged
// it is logged and acknowledged but not routed; one that is still alive
// is routed with the interval that remains.
func TestExpiredWhileLoggingNotRouted(t *testing.T) {
	h := newHeldLog(t)
	srv, _ := h.serve(t, Options{AckTimeout: time.Minute})
	addr := srv.MQTTAddr().String()
	s := dialV5(t, addr, "exp-s", 0)
	s.subscribe(packets.Subscription{Filter: "exp/#", Qos: 1}, 0)
	pub := dialV5(t, addr, "exp-p", 0)
	h.hold()
	for _, m := range []struct {
		topic  string
		expiry uint32
	}{{"exp/short", 1}, {"exp/long", 60}} {
		pub.send(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: m.topic, Payload: []byte("m"),
			PacketID: pub.nextID(), Properties: packets.Properties{MessageExpiryInterval: m.expiry},
		})
	}
	time.Sleep(3 * time.Second)
	h.release()
	for range 2 {
		if ack := pub.awaitAck("PUBLISH"); ack.FixedHeader.Type != packets.Puback || ack.ReasonCode != 0 {
			t.Fatalf("PUBACK %+v", ack)
		}
	}
	got := s.received(time.Second)
	// 3 s of the 60 passed: 57 remain, rounded to 60.
	if want := []string{`exp/long "m" qos=1 retain=false expiry~60`}; !slices.Equal(got, want) {
		t.Fatalf("received %q, want %q", got, want)
	}
	if n := counterValue(srv.metrics.expired); n != 1 {
		t.Fatalf("iotpipe_ingest_expired_total = %v, want 1", n)
	}
}

// Retained messages keep their MQTT 5 properties, and their expiry,
// across a restart of the session store.
func TestRetainedPropertiesSurviveRestart(t *testing.T) {
	r := newRig(t, Options{})
	dir := t.TempDir()
	start := func() *Server {
		srv, err := New(r.prod, Options{MQTTAddr: "127.0.0.1:0", Dev: true, SessionDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		return srv
	}
	srv := start()
	pub := dialV5(t, srv.MQTTAddr().String(), "keep-p", 0)
	props := packets.Properties{
		User: []packets.UserProperty{{Key: "a", Val: "1"}}, ContentType: "text/plain", ResponseTopic: "keep/reply",
		CorrelationData: []byte("c"), PayloadFormat: 1, PayloadFormatFlag: true, MessageExpiryInterval: 600,
	}
	pub.publish("keep/props", "r", true, props)
	pub.publish("keep/expires", "x", true, packets.Properties{MessageExpiryInterval: 2})
	// Queued for an offline persistent session: one expires, one stays.
	q := dialV5(t, srv.MQTTAddr().String(), "keep-q", 300)
	q.subscribe(packets.Subscription{Filter: "queue/#", Qos: 1}, 0)
	q.disconnect()
	pub.publish("queue/expires", "x", false, packets.Properties{MessageExpiryInterval: 2})
	pub.publish("queue/stays", "q", false, props)
	pub.disconnect()
	// A publish is routed once its PUBACK is written: wait until both
	// are queued for the offline session before stopping.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if cl, ok := srv.mqtt.Clients.Get("keep-q"); ok && cl.State.Inflight.Len() == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the two messages were never queued for the offline session")
		}
	}
	srv.Close()
	time.Sleep(4 * time.Second) // past keep/expires' expiry while iotpipe is down
	srv = start()
	defer srv.Close()
	s := dialV5(t, srv.MQTTAddr().String(), "keep-s", 0)
	s.subscribe(packets.Subscription{Filter: "keep/#", Qos: 1}, 0)
	got := s.received(time.Second)
	want := []string{`keep/props "r" qos=1 retain=true user:a=1 content-type=text/plain response-topic=keep/reply correlation="c" payload-format=1 expiry~600`}
	if !slices.Equal(got, want) {
		t.Fatalf("retained, after a restart:\n got  %q\n want %q", got, want)
	}
	got = dialV5(t, srv.MQTTAddr().String(), "keep-q", 300).received(time.Second)
	want = []string{`queue/stays "q" qos=1 retain=false user:a=1 content-type=text/plain response-topic=keep/reply correlation="c" payload-format=1 expiry~600`}
	if !slices.Equal(got, want) {
		t.Fatalf("queued, after a restart:\n got  %q\n want %q", got, want)
	}
}

// HTTP publishes reach MQTT subscribers at QoS 0 and 1.
func TestHTTPPublishRouted(t *testing.T) {
	r := newRig(t, Options{})
	s := dialV5(t, r.addr, "http-watch", 0)
	s.subscribe(packets.Subscription{Filter: "hp/#", Qos: 1}, 0)
	for _, qos := range []string{"0", "1"} {
		req := httptest.NewRequest(http.MethodPost, "/topics/hp/"+qos+"?qos="+qos, strings.NewReader("m"))
		req.SetPathValue("topic", "hp/"+qos)
		w := httptest.NewRecorder()
		r.srv.HTTPPublish(w, req)
		if w.Code != http.StatusOK {
			t.Fatalf("qos %s: %d %s", qos, w.Code, w.Body)
		}
	}
	want := []string{`hp/0 "m" qos=0 retain=false expiry~86400`, `hp/1 "m" qos=1 retain=false expiry~86400`}
	if got := s.received(time.Second); !slices.Equal(got, want) {
		t.Fatalf("received %q, want %q", got, want)
	}
}
