package republish

import (
	"encoding/json"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
)

// State is where a command is.
type State string

// Command states, in order: a command never goes back.
const (
	// Pending: the rule fired (the command is on the actions log).
	Pending State = "pending"
	// Sent: its outbound record is on the log, for the ingest nodes.
	Sent State = "sent"
	// NoSubscriber: no ingest node had a session subscribed to its
	// topic (nothing will deliver it).
	NoSubscriber State = schemas.NoSubscriber
	// Queued: kept for an offline persistent session, delivered when
	// the device reconnects.
	Queued State = schemas.Queued
	// Delivered: handed to a connected subscriber (QoS 1: sent, the
	// device's PUBACK not tracked).
	Delivered State = schemas.Delivered
	// Acknowledged: the device replied on the command's reply topic.
	Acknowledged State = "acknowledged"
)

func (s State) rank() int {
	switch s {
	case Pending:
		return 1
	case Sent:
		return 2
	case NoSubscriber:
		return 3
	case Queued:
		return 4
	case Delivered:
		return 5
	case Acknowledged:
		return 6
	}
	return 0
}

// CommandStatus is what GET /api/commands/{id} returns.
type CommandStatus struct {
	ID    string `json:"id"`
	Thing string `json:"thing,omitempty"`
	Rule  string `json:"rule,omitempty"`
	Topic string `json:"topic,omitempty"`
	State State  `json:"state"`
	// FiredAt is when the rule fired (Unix ms); SentAt when the outbound
	// record was on the log; DeliveredAt when an ingest node handed it
	// to a connected subscriber (or queued it: see State);
	// AcknowledgedAt when the reply was received. Zero when not yet.
	FiredAt        int64 `json:"fired_at,omitempty"`
	SentAt         int64 `json:"sent_at,omitempty"`
	DeliveredAt    int64 `json:"delivered_at,omitempty"`
	AcknowledgedAt int64 `json:"acknowledged_at,omitempty"`
	// Nodes are the ingest nodes that reported on it, with what each
	// did (delivered, queued, no_subscriber).
	Nodes map[string]string `json:"nodes,omitempty"`
	// Reply is the device's reply payload: JSON as sent, or a JSON
	// string when the reply is not JSON.
	Reply json.RawMessage `json:"reply,omitempty"`

	seen time.Time // last update, for expiry
}

// statuses holds the command status table.
type statuses struct {
	mu sync.Mutex
	m  map[string]*CommandStatus
}

func newStatuses() *statuses { return &statuses{m: map[string]*CommandStatus{}} }

// update merges what one log record says about command id.
func (s *statuses) update(id string, fn func(c *CommandStatus)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[id]
	if !ok {
		c = &CommandStatus{ID: id}
		s.m[id] = c
	}
	fn(c)
	c.seen = time.Now()
}

func (s *statuses) advance(c *CommandStatus, st State) {
	if st.rank() > c.State.rank() {
		c.State = st
	}
}

func (s *statuses) pending(cmd *command) {
	s.update(cmd.id, func(c *CommandStatus) {
		c.Thing, c.Rule, c.Topic, c.FiredAt = cmd.thing, cmd.rule, cmd.topic, cmd.firedAt
		s.advance(c, Pending)
	})
}

func (s *statuses) sent(id string, at time.Time) {
	s.update(id, func(c *CommandStatus) {
		if c.SentAt == 0 {
			c.SentAt = at.UnixMilli()
		}
		s.advance(c, Sent)
	})
}

// reported merges an ingest node's delivery report: the command's state
// is the best any node reached.
func (s *statuses) reported(d schemas.Delivery) {
	s.update(d.Command, func(c *CommandStatus) {
		if c.Nodes == nil {
			c.Nodes = map[string]string{}
		}
		c.Nodes[d.Node] = d.Outcome
		st := State(d.Outcome)
		if (st == Delivered || st == Queued) && c.DeliveredAt == 0 {
			c.DeliveredAt = d.At
		}
		s.advance(c, st)
	})
}

func (s *statuses) acknowledged(id, thing string, at time.Time, reply []byte) {
	s.update(id, func(c *CommandStatus) {
		if c.Thing == "" {
			c.Thing = thing
		}
		if c.AcknowledgedAt == 0 {
			c.AcknowledgedAt = at.UnixMilli()
			if json.Valid(reply) {
				c.Reply = append(json.RawMessage(nil), reply...)
			} else {
				c.Reply, _ = json.Marshal(string(reply))
			}
		}
		s.advance(c, Acknowledged)
	})
}

func (s *statuses) get(id string) (CommandStatus, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.m[id]
	if !ok || c.State == "" {
		return CommandStatus{}, false
	}
	out := *c
	// The tracker goes on writing the table's map; Reply is never
	// written once set.
	out.Nodes = maps.Clone(c.Nodes)
	return out, true
}

// expire drops entries not updated since before.
func (s *statuses) expire(before time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, c := range s.m {
		if c.seen.Before(before) {
			delete(s.m, id)
		}
	}
}

// Command returns the status of command id.
func (e *Executor) Command(id string) (CommandStatus, bool) { return e.status.get(id) }

// Handler serves GET /api/commands/{id}. Command ids contain slashes:
// mount it as "GET /api/commands/{id...}" on a ServeMux, or at the
// prefix /api/commands/ (the id is then the rest of the path).
func (e *Executor) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		id := r.PathValue("id")
		if id == "" {
			id = strings.TrimPrefix(r.URL.Path, "/api/commands/")
		}
		w.Header().Set("Content-Type", "application/json")
		c, ok := e.status.get(id)
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"error": "no command " + id + " (in the status window)"})
			return
		}
		json.NewEncoder(w).Encode(c)
	})
}
