package ingest

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"
)

// HTTPPublish handles `POST /topics/{topic...}[?qos=0|1&retain=true]`
// like AWS IoT's HTTPS publish (and Sigfox-style callbacks): the body is
// the payload, written to the log, answered 200 once the log
// acknowledged it, then routed to MQTT subscribers. The client id is the
// X-Client-Id header (default "http"); the record is keyed as MQTT keys
// it (schemas.EventKey: the thing of a $aws/things/{thing}/ topic, else
// the client id). Topics and client ids MQTT would refuse are refused:
// 400 for one that breaks a rule or limit, 403 for a topic only iotpipe
// publishes on.
func (s *Server) HTTPPublish(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	if err := checkTopic(topic); err != nil {
		httpError(w, http.StatusBadRequest, "bad topic: "+err.Error())
		return
	}
	if reason := reservedTopic(topic); reason != "" {
		s.metrics.refused.WithLabelValues("reserved_topic").Inc()
		httpError(w, http.StatusForbidden, "only iotpipe publishes on "+topic+": "+reason)
		return
	}
	principal, ok := s.httpPrincipal(w, r)
	if !ok {
		return
	}
	client, ok := httpClientID(w, r)
	if !ok {
		return
	}
	qos := byte(1)
	if q := r.URL.Query().Get("qos"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 0 || n > 1 {
			httpError(w, http.StatusBadRequest, "qos must be 0 or 1")
			return
		}
		qos = byte(n)
	}
	retain := r.URL.Query().Get("retain") == "true"
	body, ok := s.readPayload(w, r)
	if !ok {
		return
	}
	env := schemas.Envelope{
		Type: schemas.EventPublish, Topic: topic, ClientID: client, Principal: principal,
		QoS: qos, Retain: retain, ReceivedAt: time.Now().UnixNano(),
	}
	rec := &kgo.Record{Topic: s.opts.Topics.Events, Key: []byte(schemas.EventKey(client, topic)), Value: body, Headers: env.Headers()}
	if err := s.producer.ProduceSync(r.Context(), rec).FirstErr(); err != nil {
		httpError(w, http.StatusServiceUnavailable, "event log unavailable: "+err.Error())
		return
	}
	s.metrics.httpPublished.Inc()
	s.route(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain},
		TopicName:   topic, Payload: body,
	}, client)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"message": "OK", "partition": rec.Partition, "offset": rec.Offset})
}

// readPayload reads a request body of at most MaxPayload bytes; on
// failure it has answered (400, or 413 when too large) and returns false.
func (s *Server) readPayload(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(s.opts.MaxPayload)+1))
	if err != nil {
		httpError(w, http.StatusBadRequest, "read body: "+err.Error())
		return nil, false
	}
	if len(body) > s.opts.MaxPayload {
		s.metrics.refused.WithLabelValues("payload_too_large").Inc()
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("payload larger than %d bytes", s.opts.MaxPayload))
		return nil, false
	}
	return body, true
}

// httpClientID is the client id of an HTTP caller: the X-Client-Id
// header, or "http". A client id MQTT would refuse (checkClientID) is
// answered 400 and ok is false.
// httpPrincipal returns the principal of an HTTP request (see
// Options.HTTPPrincipal), or answers 401 and returns false.
func (s *Server) httpPrincipal(w http.ResponseWriter, r *http.Request) (string, bool) {
	if s.opts.HTTPPrincipal != nil {
		if p := s.opts.HTTPPrincipal(r); p != "" {
			return p, true
		}
	}
	if s.opts.Dev {
		return "http:anonymous", true
	}
	httpError(w, http.StatusUnauthorized, "an HTTP publish or shadow request needs an API token (Authorization: Bearer <token>)")
	return "", false
}

func httpClientID(w http.ResponseWriter, r *http.Request) (id string, ok bool) {
	id = r.Header.Get("X-Client-Id")
	if id == "" {
		return "http", true
	}
	if err := checkClientID(id); err != nil {
		httpError(w, http.StatusBadRequest, "bad X-Client-Id: "+err.Error())
		return "", false
	}
	return id, true
}

// httpError answers with status code and an error document in the shape
// of AWS IoT's shadow errors: {"code","message","timestamp"}.
func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg, "timestamp": time.Now().Unix()})
}
