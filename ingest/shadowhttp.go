package ingest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ShadowHTTP serves AWS IoT's data-plane shadow REST shape:
// GET|POST|DELETE /things/{thing}/shadow[?name=shadowName]. The request
// is written to the log like an MQTT shadow request (topic
// $aws/things/{thing}/shadow[/name/{name}]/get|update|delete, keyed by
// the thing, so HTTP and MQTT requests of one thing stay ordered) and
// answered once the shadow processor applied it: 200 with the accepted
// document, or the rejection's AWS error code and body.
func (s *Server) ShadowHTTP(w http.ResponseWriter, r *http.Request) {
	thing := r.PathValue("thing")
	if thing == "" || strings.ContainsAny(thing, "/+#\x00") || len(thing) > MaxThingNameBytes {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("bad thing name (at most %d bytes, no / + # or NUL)", MaxThingNameBytes))
		return
	}
	principal, ok := s.httpPrincipal(w, r)
	if !ok {
		return
	}
	var op string
	switch r.Method {
	case http.MethodGet:
		op = "get"
	case http.MethodPost:
		op = "update"
	case http.MethodDelete:
		op = "delete"
	default:
		httpError(w, http.StatusMethodNotAllowed, "use GET, POST or DELETE")
		return
	}
	topic := "$aws/things/" + thing + "/shadow"
	name := r.URL.Query().Get("name")
	if strings.ContainsAny(name, "/+#\x00") {
		httpError(w, http.StatusBadRequest, "bad shadow name")
		return
	}
	if name != "" {
		topic += "/name/" + name
	}
	topic += "/" + op
	if err := checkTopic(topic); err != nil {
		httpError(w, http.StatusBadRequest, "bad shadow request: "+err.Error())
		return
	}
	client, ok := httpClientID(w, r)
	if !ok {
		return
	}
	var body []byte
	if op == "update" {
		if body, ok = s.readPayload(w, r); !ok {
			return
		}
	}
	var id [12]byte
	_, _ = rand.Read(id[:])
	reqID := hex.EncodeToString(id[:])
	answers, done := s.Wait(reqID)
	defer done()
	env := schemas.Envelope{
		Type: schemas.EventPublish, Topic: topic, ClientID: client, Principal: principal,
		QoS: 1, ReceivedAt: time.Now().UnixNano(), RequestID: reqID,
	}
	rec := &kgo.Record{Topic: s.opts.Topics.Events, Key: []byte(schemas.EventKey(client, topic)), Value: body, Headers: env.Headers()}
	if err := s.producer.ProduceSync(r.Context(), rec).FirstErr(); err != nil {
		httpError(w, http.StatusServiceUnavailable, "event log unavailable: "+err.Error())
		return
	}
	timer := time.NewTimer(s.opts.AckTimeout)
	defer timer.Stop()
	for {
		select {
		case o := <-answers:
			status := http.StatusOK
			if strings.HasSuffix(o.Topic, "/rejected") {
				var e struct {
					Code int `json:"code"`
				}
				if json.Unmarshal(o.Payload, &e) == nil && e.Code >= 400 {
					status = e.Code
				} else {
					status = http.StatusBadRequest
				}
			} else if !strings.HasSuffix(o.Topic, "/accepted") {
				continue // delta/documents events of the same request
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write(o.Payload)
			return
		case <-timer.C:
			httpError(w, http.StatusGatewayTimeout, "the shadow processor did not answer in time (is `iotpipe process` running?); the request is in the log and will still be applied")
			return
		case <-r.Context().Done():
			return
		}
	}
}
