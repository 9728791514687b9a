// Package lastseen keeps, per thing, when it was last seen, how many
// messages it published and whether it is connected: the runtime's
// first real processor, served at GET /api/things/{name}.
package lastseen

import (
	"context"
	"encoding/binary"
	"errors"
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

// Processor is the lastseen processor. It keeps each thing's decoded
// record in its memo, so an event costs an encode and a write, not a
// read and a decode.
type Processor struct{}

// Name implements processors.Processor.
func (Processor) Name() string { return Name }

// Process implements processors.Processor.
func (Processor) Process(_ context.Context, tx *processors.Tx, ev *processors.Event) error {
	key := []byte(ev.Thing)
	var t Thing
	kept, _ := tx.Memo().Get(key)
	memo, _ := kept.(*Thing)
	if memo != nil {
		t = *memo
	} else {
		raw, ok, err := tx.Get(key)
		if err != nil {
			return err
		}
		if ok {
			if t, err = decode(raw); err != nil {
				return fmt.Errorf("lastseen state of %s: %w", ev.Thing, err)
			}
		} else {
			t.Name = ev.Thing
			t.FirstSeen = ev.ReceivedAt().UTC()
		}
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
	var buf [96]byte
	if err := tx.Set(key, t.appendBinary(buf[:0])); err != nil {
		return err
	}
	if memo == nil {
		memo = new(Thing)
		tx.Memo().Put(key, memo)
	}
	*memo = t
	return nil
}

// The stored record is binary: recordVersion, the name and the last
// topic with their uvarint lengths, the counters and times (Unix ns) as
// varints, and the connected flag. State written before this form holds
// the record as JSON (Thing's json tags), which starts with '{' and is
// still read.
const recordVersion = 1

func (t *Thing) appendBinary(b []byte) []byte {
	b = append(b, recordVersion)
	b = binary.AppendUvarint(b, uint64(len(t.Name)))
	b = append(b, t.Name...)
	b = binary.AppendUvarint(b, uint64(len(t.LastTopic)))
	b = append(b, t.LastTopic...)
	b = binary.AppendVarint(b, t.Messages)
	b = binary.AppendVarint(b, t.FirstSeen.UnixNano())
	b = binary.AppendVarint(b, t.LastSeen.UnixNano())
	b = binary.AppendVarint(b, t.Offset)
	c := byte(0)
	if t.Connected {
		c = 1
	}
	return append(b, c)
}

// errCorrupt is wrapped by the errors of records that do not decode.
var errCorrupt = errors.New("corrupt record")

// decode decodes a stored record, binary or JSON.
func decode(b []byte) (Thing, error) {
	var t Thing
	if len(b) > 0 && b[0] == '{' {
		err := json.Unmarshal(b, &t)
		return t, err
	}
	if len(b) == 0 || b[0] != recordVersion {
		return Thing{}, fmt.Errorf("%w: unknown version", errCorrupt)
	}
	b = b[1:]
	var bad bool
	str := func() string {
		n, w := binary.Uvarint(b)
		if w <= 0 || n > uint64(len(b)-w) {
			bad = true
			return ""
		}
		s := string(b[w : w+int(n)])
		b = b[w+int(n):]
		return s
	}
	num := func() int64 {
		v, w := binary.Varint(b)
		if w <= 0 {
			bad = true
			return 0
		}
		b = b[w:]
		return v
	}
	t.Name, t.LastTopic = str(), str()
	t.Messages = num()
	t.FirstSeen, t.LastSeen = time.Unix(0, num()).UTC(), time.Unix(0, num()).UTC()
	t.Offset = num()
	if bad || len(b) != 1 || b[0] > 1 {
		return Thing{}, fmt.Errorf("%w (%d bytes)", errCorrupt, len(b))
	}
	t.Connected = b[0] == 1
	return t, nil
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
	t, err := decode(raw)
	if err != nil {
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
