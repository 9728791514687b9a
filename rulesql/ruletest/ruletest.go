// Package ruletest runs the "iotpipe rules check" and "iotpipe rules test"
// tools: load rule files, and run them over sample events without a
// server.
//
// The test input is JSON Lines, one event a line:
//
//	{"topic": "...", "payload": <JSON value, or a string for non-JSON>,
//	 "clientid": "...", "principal": "...", "thing": "...", "timestamp": <epoch ms>}
//
// (all but topic and payload optional; thing defaults to clientid,
// timestamp to the current time). A string payload is the payload's bytes:
// decoded as JSON when it is JSON, otherwise handled as a binary payload.
// The output is one JSON object per rule output, in input order (rules
// in load order within one event):
//
//	{"rule": "...", "output": <object or SELECT VALUE value>, "actions": [{"type": "...", "params": {...}}]}
//
// "actions" is left out for rules without actions. Keys are sorted.
package ruletest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/rulesql/value"
	"github.com/iotpipe/iotpipe/schemas/payload"
)

// Load compiles the .sql files found in paths (files or directories).
func Load(paths []string) (*rulesql.Set, error) {
	var files []string
	for _, p := range paths {
		fs, err := rulesql.SQLFiles(p)
		if err != nil {
			return nil, err
		}
		files = append(files, fs...)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .sql files in %v", paths)
	}
	return rulesql.LoadFiles(files)
}

// Event is one line of test input.
type Event struct {
	Topic     string          `json:"topic"`
	Payload   json.RawMessage `json:"payload"`
	ClientID  string          `json:"clientid"`
	Principal string          `json:"principal"`
	Thing     string          `json:"thing"`
	Timestamp *int64          `json:"timestamp"`
}

// Input converts the event to a rule Input.
func (e *Event) Input(now time.Time) (*rulesql.Input, error) {
	in := &rulesql.Input{Topic: e.Topic, ClientID: e.ClientID, Principal: e.Principal, Thing: e.Thing}
	if in.Thing == "" {
		in.Thing = e.ClientID
	}
	if e.Timestamp != nil {
		in.Timestamp = *e.Timestamp
	} else {
		in.Timestamp = now.UnixMilli()
	}
	raw := bytes.TrimSpace(e.Payload)
	if len(raw) > 0 && raw[0] == '"' {
		s, err := strconv.Unquote(string(raw))
		if err != nil {
			var str string
			if err := json.Unmarshal(raw, &str); err != nil {
				return nil, fmt.Errorf("payload string: %w", err)
			}
			s = str
		}
		in.Raw = []byte(s)
		if v, err := payload.Decode(in.Raw); err == nil {
			in.Payload = v
		} else {
			in.Payload = value.Undefined
		}
		return in, nil
	}
	if len(raw) == 0 {
		in.Payload = value.Undefined
		return in, nil
	}
	v, err := payload.Decode(raw)
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	in.Raw = raw
	in.Payload = v
	return in, nil
}

// Output is one line of test output.
type Output struct {
	Rule    string                   `json:"rule"`
	Output  any                      `json:"output"`
	Actions []rulesql.RenderedAction `json:"actions,omitempty"`
	// Resolved marks the resolved event of a FOR ... RESOLVE rule.
	Resolved bool `json:"resolved,omitempty"`
}

// durationTracker runs WHERE ... FOR rules on event time: a rule fires
// once, on the first event at which its condition has held (on every
// event of the thing) for the duration, and, with RESOLVE, sends a
// resolved event (with the output that fired) on the first event after
// that where it no longer holds. Without a clock, time advances only with
// the events' timestamps.
type durationTracker map[string]*durationState

type durationState struct {
	since  int64
	fired  bool
	output any
}

func (d durationTracker) key(r *rulesql.Rule, in *rulesql.Input) string {
	return r.Name + "\x00" + in.Thing
}

// step records whether the condition holds now and reports whether the
// rule fires or resolves at this event.
func (d durationTracker) step(r *rulesql.Rule, in *rulesql.Input, holds bool) (fire, resolve bool) {
	k := d.key(r, in)
	s := d[k]
	if !holds {
		if s != nil {
			delete(d, k)
			d[k+"\x00last"] = &durationState{output: s.output}
			return false, s.fired && r.For.Resolve
		}
		return false, false
	}
	if s == nil {
		s = &durationState{since: in.Timestamp}
		d[k] = s
	}
	if !s.fired && in.Timestamp-s.since >= r.For.Duration.Milliseconds() {
		s.fired = true
		return true, false
	}
	return false, false
}

func (d durationTracker) remember(r *rulesql.Rule, in *rulesql.Input, out any) {
	if s := d[d.key(r, in)]; s != nil {
		s.output = out
	}
}

func (d durationTracker) last(r *rulesql.Rule, in *rulesql.Input) any {
	k := d.key(r, in) + "\x00last"
	s := d[k]
	delete(d, k)
	if s == nil || s.output == nil {
		return map[string]any{}
	}
	return s.output
}

// MemState is an in-memory State for stateful functions.
type MemState map[string][]byte

// Get returns the value of key.
func (m MemState) Get(key []byte) ([]byte, bool, error) {
	v, ok := m[string(key)]
	return v, ok, nil
}

// Set stores value under key.
func (m MemState) Set(key, value []byte) error {
	m[string(key)] = append([]byte(nil), value...)
	return nil
}

// Options tune Run.
type Options struct {
	// Now is the receive time of events without a timestamp (default
	// time.Now).
	Now func() time.Time
	// Shadow answers get_thing_shadow (default: no shadows).
	Shadow rulesql.ShadowReader
}

// Run evaluates set over the JSON Lines events read from r and writes one
// output line per rule output to w. Errors name the input line.
func Run(ctx context.Context, set *rulesql.Set, r io.Reader, w io.Writer, o Options) error {
	if o.Now == nil {
		o.Now = time.Now
	}
	st := MemState{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	var matched []*rulesql.Rule
	durations := durationTracker{}
	line := 0
	for sc.Scan() {
		line++
		if err := ctx.Err(); err != nil {
			return err
		}
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 || b[0] == '#' {
			continue
		}
		var ev Event
		if err := json.Unmarshal(b, &ev); err != nil {
			return fmt.Errorf("input line %d: %w", line, err)
		}
		if ev.Topic == "" {
			return fmt.Errorf("input line %d: topic is required", line)
		}
		in, err := ev.Input(o.Now())
		if err != nil {
			return fmt.Errorf("input line %d: %w", line, err)
		}
		in.Shadow = o.Shadow
		in.Offset = int64(line)
		matched = set.Router.AppendMatch(matched[:0], ev.Topic)
		for _, rule := range matched {
			if rule.Window != nil {
				continue // windows are run by the processor, not here
			}
			out, fired, err := rule.Eval(in, st)
			if err != nil {
				return fmt.Errorf("input line %d: rule %s: %w", line, rule.Name, err)
			}
			resolved := false
			if rule.For != nil {
				if fired, resolved = durations.step(rule, in, fired); resolved {
					out = durations.last(rule, in)
				}
				if !fired && !resolved {
					continue
				}
				if fired {
					durations.remember(rule, in, out)
				}
			}
			if !resolved && (!fired || rulesql.IsUndefined(out)) {
				continue
			}
			o := Output{Rule: rule.Name, Output: out, Resolved: resolved}
			if len(rule.Actions) > 0 {
				o.Actions = rule.ActionTargets(in)
			}
			enc, err := value.MarshalJSON(o)
			if err != nil {
				return fmt.Errorf("input line %d: rule %s: encode output: %w", line, rule.Name, err)
			}
			bw.Write(enc)
			bw.WriteByte('\n')
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read input: %w", err)
	}
	return bw.Flush()
}
