package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// liveQueue is how many messages a stream may fall behind; a stream
// further behind gets "lost" and the page reads its view again.
const liveQueue = 256

// heartbeat is how often an idle stream sends a comment, so proxies and
// the page see it alive.
const heartbeat = 15 * time.Second

// message is one server-sent event.
type message struct {
	event string
	data  []byte
}

// stream is one open GET /api/dashboard/live.
type stream struct {
	ch   chan message
	lost bool // a message was dropped; guarded by hub.mu
}

// hub fans the dashboard's live messages out to the open streams: the
// fleet's (every changed row) and each thing's (its events).
type hub struct {
	mu     sync.Mutex
	fleet  map[*stream]struct{}
	things map[string]map[*stream]struct{}
}

func newHub() *hub {
	return &hub{fleet: map[*stream]struct{}{}, things: map[string]map[*stream]struct{}{}}
}

// subscribe opens a stream of thing's events, or of the fleet's rows
// when thing is "".
func (h *hub) subscribe(thing string) *stream {
	s := &stream{ch: make(chan message, liveQueue)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if thing == "" {
		h.fleet[s] = struct{}{}
		return s
	}
	m := h.things[thing]
	if m == nil {
		m = map[*stream]struct{}{}
		h.things[thing] = m
	}
	m[s] = struct{}{}
	return s
}

func (h *hub) unsubscribe(thing string, s *stream) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if thing == "" {
		delete(h.fleet, s)
		return
	}
	delete(h.things[thing], s)
	if len(h.things[thing]) == 0 {
		delete(h.things, thing)
	}
}

// watched says whether a stream follows thing.
func (h *hub) watched(thing string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.things[thing]) > 0
}

// fleetWatched says whether a fleet stream is open.
func (h *hub) fleetWatched() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.fleet) > 0
}

// thing sends event with v to thing's streams.
func (h *hub) thing(thing, event string, v any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.send(h.things[thing], event, v)
}

// fleetSend sends event with v to the fleet streams.
func (h *hub) fleetSend(event string, v any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.send(h.fleet, event, v)
}

// send queues the message on each stream of to; h.mu is held.
func (h *hub) send(to map[*stream]struct{}, event string, v any) {
	if len(to) == 0 {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	for s := range to {
		select {
		case s.ch <- message{event, b}:
		default:
			s.lost = true
		}
	}
}

// takeLost says whether s dropped a message since the last call.
func (h *hub) takeLost(s *stream) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := s.lost
	s.lost = false
	return l
}

// serveLive streams server-sent events (text/event-stream). The page
// reads it with fetch, not EventSource, so the token goes in the
// Authorization header like every other request (EventSource cannot set
// headers, and a token in the URL would end up in logs).
//
// Fleet stream (no thing): "rows" (changed fleet rows, at most every
// 500 ms), "reload" (too many changed: read the page again). Thing
// stream: "event", "shadow", "anomaly", "command". Both: "lost" (the
// page fell behind: read the view again).
func (d *Dashboard) serveLive(w http.ResponseWriter, r *http.Request) {
	thing := r.URL.Query().Get("thing")
	rc := http.NewResponseController(w)
	// The server's write timeout is for ordinary answers; a stream
	// stays open.
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := d.hub.subscribe(thing)
	defer d.hub.unsubscribe(thing, s)
	fmt.Fprintf(w, "event: hello\ndata: {\"ready\":%t}\n\n", d.Ready())
	if err := rc.Flush(); err != nil {
		return
	}
	beat := time.NewTicker(heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-d.done:
			return
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": beat\n\n"); err != nil {
				return
			}
		case m := <-s.ch:
			if d.hub.takeLost(s) {
				fmt.Fprint(w, "event: lost\ndata: {}\n\n")
			}
			if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", m.event, m.data); err != nil {
				return
			}
			// Send what else is queued in the same write.
			for more := true; more; {
				select {
				case m := <-s.ch:
					fmt.Fprintf(w, "event: %s\ndata: %s\n\n", m.event, m.data)
				default:
					more = false
				}
			}
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
