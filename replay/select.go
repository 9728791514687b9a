package replay

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/iotpipe/iotpipe/schemas"
)

// Selection says which events of the log to read. The zero value selects
// every event the log holds now.
type Selection struct {
	// Thing keeps the events of one thing (the record key) and reads
	// only its partition.
	Thing string
	// Topic is an MQTT topic filter ("farm/+/temp", "farm/#") the
	// event's topic must match; "" matches every topic.
	Topic string
	// Types keeps events of these types (nil: every type).
	Types []schemas.EventType
	// From and To bound the events' receive times to [From, To); a zero
	// From is the log's start, a zero To its end when the read starts.
	// Both are found with ListOffsets by time, never by scanning.
	From, To time.Time
	// Follow keeps reading new events after the end (To must be zero).
	Follow bool
	// Limit stops after this many selected events (0: no limit).
	Limit int
}

// Validate reports a selection that cannot be read, saying what to
// change.
func (s *Selection) Validate() error {
	if err := checkFilter(s.Topic); err != nil {
		return err
	}
	if !s.From.IsZero() && !s.To.IsZero() && !s.From.Before(s.To) {
		return fmt.Errorf("--from %s is not before --to %s", s.From.Format(time.RFC3339Nano), s.To.Format(time.RFC3339Nano))
	}
	if s.Follow && !s.To.IsZero() {
		return fmt.Errorf("--follow reads new events as they come: it takes no --to")
	}
	if s.Limit < 0 {
		return fmt.Errorf("limit %d: want 0 (no limit) or more", s.Limit)
	}
	return nil
}

// ParseTypes parses a comma-separated list of event types.
func ParseTypes(s string) ([]schemas.EventType, error) {
	if s == "" {
		return nil, nil
	}
	known := []schemas.EventType{schemas.EventPublish, schemas.EventConnected, schemas.EventDisconnected,
		schemas.EventSubscribed, schemas.EventUnsubscribed}
	var out []schemas.EventType
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimSpace(t)
		if !slices.Contains(known, schemas.EventType(t)) {
			return nil, fmt.Errorf("event type %q: want one of publish, connected, disconnected, subscribed, unsubscribed", t)
		}
		out = append(out, schemas.EventType(t))
	}
	return out, nil
}

// matches reports whether an event belongs to the selection (time
// aside).
func (s *Selection) matches(thing string, env *schemas.Envelope) bool {
	if s.Thing != "" && thing != s.Thing {
		return false
	}
	if len(s.Types) > 0 && !slices.Contains(s.Types, env.Type) {
		return false
	}
	return s.Topic == "" || topicMatches(s.Topic, env.Topic)
}

// inTime reports whether a receive time (Unix ns) is in [From, To).
func (s *Selection) inTime(rx int64) bool {
	if !s.From.IsZero() && rx < s.From.UnixNano() {
		return false
	}
	return s.To.IsZero() || rx < s.To.UnixNano()
}

// checkFilter checks an MQTT topic filter: '+' only as a whole level,
// '#' only as the whole last level.
func checkFilter(f string) error {
	if f == "" {
		return nil
	}
	if !utf8.ValidString(f) {
		return fmt.Errorf("topic filter %q: not valid UTF-8 (MQTT topics are UTF-8)", f)
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("topic filter %q: '#' must be the whole last level", f)
		case l != "#" && l != "+" && strings.ContainsAny(l, "#+"):
			return fmt.Errorf("topic filter %q: '+' and '#' must be whole levels", f)
		}
	}
	return nil
}

// topicMatches reports whether topic matches the MQTT filter f (as the
// rules' router matches: wildcards at the first level do not match
// topics starting with '$').
func topicMatches(f, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(f, "+") || strings.HasPrefix(f, "#")) {
		return false
	}
	for {
		fl, frest, fmore := strings.Cut(f, "/")
		if fl == "#" {
			return true
		}
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case !fmore && !tmore:
			return true
		case !tmore:
			return frest == "#" // 'a/#' matches 'a'
		case !fmore:
			return false
		}
		f, topic = frest, trest
	}
}
