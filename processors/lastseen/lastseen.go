// Package lastseen keeps, per thing, when it was last seen, how many
// messages it published and whether it is connected: the runtime's
// first real processor, served at GET /api/things/{name}.
package lastseen

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/segmentio/encoding/json"
)

// Name is the processor's state namespace.
const Name = "lastseen"

// Thing is the state kept per thing.
type Thing struct {
	Name      string    `json:"thing"`
	Messages  int64     `json:"messages"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	LastTopic string    `json:"last_topic,omitempty"`
	Connected bool      `json:"connected"`
	// Offset is the events-topic offset of the last event applied.
	Offset int64 `json:"offset"`
}

// Processor is the lastseen processor.
type Processor struct{}

// Name implements processors.Processor.
func (Processor) Name() string { return Name }

// Process implements processors.Processor.
func (Processor) Process(_ context.Context, tx *processors.Tx, ev *processors.Event) error {
	var t Thing
	raw, ok, err := tx.Get([]byte(ev.Thing))
	if err != nil {
		return err
	}
	if ok {
		if err := json.Unmarshal(raw, &t); err != nil {
			return fmt.Errorf("lastseen state of %s: %w", ev.Thing, err)
		}
	} else {
		t.Name = ev.Thing
		t.FirstSeen = ev.ReceivedAt().UTC()
	}
	t.LastSeen = ev.ReceivedAt().UTC()
	t.Offset = ev.Offset
	switch ev.Envelope.Type {
	case schemas.EventPublish:
		t.Messages++
		t.LastTopic = ev.Envelope.Topic
	case schemas.EventConnected:
		t.Connected = true
	case schemas.EventDisconnected:
		t.Connected = false
	}
	b, err := json.Marshal(&t)
	if err != nil {
		return err
	}
	return tx.Set([]byte(ev.Thing), b)
}

// Reader reads committed processor state (processors.Runner does).
type Reader interface {
	Read(processor string, key []byte) ([]byte, bool, error)
}

// Get returns the state of thing.
func Get(r Reader, thing string) (Thing, bool, error) {
	raw, ok, err := r.Read(Name, []byte(thing))
	if err != nil || !ok {
		return Thing{}, ok, err
	}
	var t Thing
	if err := json.Unmarshal(raw, &t); err != nil {
		return Thing{}, false, fmt.Errorf("lastseen state of %s: %w", thing, err)
	}
	return t, true, nil
}

// Handler serves GET /api/things/{name}.
func Handler(r Reader) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		name := req.PathValue("name")
		t, ok, err := Get(r, name)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case err != nil:
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(map[string]string{"message": err.Error()})
		case !ok:
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(map[string]string{"message": "no events from thing " + name})
		default:
			_ = json.NewEncoder(w).Encode(t)
		}
	})
}
