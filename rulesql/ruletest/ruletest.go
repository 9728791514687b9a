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
// timestamp to the current time; "type", "partition" and "offset", as
// iotpipe events --json writes them, are optional too). A string payload
// is the payload's bytes: decoded as JSON when it is JSON, otherwise
// handled as a binary payload. The output is one JSON object per rule
// output, in input order (rules in load order within one event):
//
//	{"rule": "...", "output": <object or SELECT VALUE value>, "actions": [{"type": "...", "params": {...}}], "resolved": true}
//
// "actions" is left out for rules without actions, "resolved" but on the
// resolved event of a FOR ... RESOLVE rule. Keys of maps are sorted. FOR
// rules run as in the stream processors, on the events' timestamps (see
// TickInterval).
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
	// Type is the event's type (publish when empty); rules see only
	// publish, connected and disconnected events, as in the stream.
	Type string `json:"type,omitempty"`
	// Partition and Offset, when given, place the event in the log (as
	// iotpipe events --json writes them) for traceid() and error
	// payloads; by default partition 0 and the input line.
	Partition *int32 `json:"partition,omitempty"`
	Offset    *int64 `json:"offset,omitempty"`
}

// Routable reports whether rules see events of type typ ("" is
// publish): publishes and the lifecycle events, as the rules processor
// routes them.
func Routable(typ string) bool {
	switch typ {
	case "", "publish", "connected", "disconnected":
		return true
	}
	return false
}

// Input converts the event to a rule Input.
func (e *Event) Input(now time.Time) (*rulesql.Input, error) {
	in := &rulesql.Input{Topic: e.Topic, ClientID: e.ClientID, Principal: e.Principal, Thing: e.Thing}
	if e.Partition != nil {
		in.Partition = *e.Partition
	}
	if e.Offset != nil {
		in.Offset = *e.Offset
	}
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

// EncodeOutput encodes o as one line of output (without the newline):
// keys in the order of Output's fields, maps' keys sorted.
func EncodeOutput(o Output) ([]byte, error) { return value.MarshalJSON(o) }

// Output is one line of test output.
type Output struct {
	Rule    string                   `json:"rule"`
	Output  any                      `json:"output"`
	Actions []rulesql.RenderedAction `json:"actions,omitempty"`
	// Resolved marks the resolved event of a FOR ... RESOLVE rule.
	Resolved bool `json:"resolved,omitempty"`
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
	durations := newDurations(set)
	var werr error
	write := func(line int, o Output) {
		enc, err := EncodeOutput(o)
		if err != nil && werr == nil {
			werr = fmt.Errorf("input line %d: rule %s: encode output: %w", line, o.Rule, err)
		}
		bw.Write(enc)
		bw.WriteByte('\n')
	}
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
		if !Routable(ev.Type) {
			continue
		}
		in.Shadow = o.Shadow
		if ev.Offset == nil {
			in.Offset = int64(line)
		}
		for _, f := range durations.tick(in.Timestamp) {
			write(line, f)
		}
		matched = set.Router.AppendMatch(matched[:0], ev.Topic)
		for _, rule := range matched {
			if rule.Window != nil {
				continue // windows are run by the processor, not here
			}
			out, fired, err := rule.Eval(in, st)
			if err != nil {
				return fmt.Errorf("input line %d: rule %s: %w", line, rule.Name, err)
			}
			if rule.For != nil {
				for _, f := range durations.observe(rule, in, fired && !rulesql.IsUndefined(out), out) {
					write(line, f)
				}
				continue
			}
			if !fired || rulesql.IsUndefined(out) {
				continue
			}
			f := Output{Rule: rule.Name, Output: out}
			if len(rule.Actions) > 0 {
				f.Actions = rule.ActionTargets(in)
			}
			write(line, f)
		}
		if werr != nil {
			return werr
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read input: %w", err)
	}
	return bw.Flush()
}
