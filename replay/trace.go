package replay

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/rulesql/ruletest"
	"github.com/iotpipe/iotpipe/rulesql/value"
	"github.com/iotpipe/iotpipe/schemas/payload"
)

// RuleTrace says what one rule made of one event.
type RuleTrace struct {
	Rule string `json:"rule"`
	// Filter is the rule's FROM topic filter; Matched whether the
	// event's topic matches it (rules see only publish and lifecycle
	// events).
	Filter  string `json:"filter"`
	Matched bool   `json:"matched"`
	// Where is the WHERE clause's value as text (true, false, Undefined,
	// or the JSON of another value); Undefined names the attributes it
	// reads that the event lacks.
	Where     string   `json:"where,omitempty"`
	Undefined []string `json:"undefined,omitempty"`
	// Holds reports whether the WHERE clause holds.
	Holds bool `json:"holds"`
	// Note says what a holding condition does for a FOR or GROUP BY rule.
	Note string `json:"note,omitempty"`
	// Outputs are what the rule gave at this event (rules test lines).
	Outputs []json.RawMessage `json:"outputs,omitempty"`
	// Error is the rule's failure on this event.
	Error string `json:"error,omitempty"`
}

// EventTrace is one event, what the ticks before it fired, and what
// every rule made of it.
type EventTrace struct {
	Event *Event
	// Ticks are the outputs of the timers and windows that time passing
	// up to this event fired (before the event).
	Ticks []Output
	// Rules are every rule, in load order (none for an event whose
	// envelope could not be decoded).
	Rules []RuleTrace
}

// Tracer replays events like an Engine and says, for each event, why
// each rule did or did not fire. It explains a rule on the state before
// the event from a state of its own (pewma advanced exactly as the
// rules processor advances it); get_thing_shadow() reads no shadow
// there.
type Tracer struct {
	eng  *Engine
	set  *rulesql.Set
	st   ruletest.MemState
	cur  *EventTrace
	emit func(*EventTrace) error
}

// NewTracer returns a Tracer of set passing each event's trace to emit.
func NewTracer(set *rulesql.Set, opts Options, emit func(*EventTrace) error) (*Tracer, error) {
	t := &Tracer{set: set, st: ruletest.MemState{}, emit: emit}
	eng, err := NewEngine(set, opts, t.output)
	if err != nil {
		return nil, err
	}
	eng.before = t.explain
	t.eng = eng
	return t, nil
}

// Add traces one event.
func (t *Tracer) Add(ctx context.Context, ev *Event) error {
	t.cur = &EventTrace{Event: ev}
	before := t.eng.Summary().Rules
	if err := t.eng.Add(ctx, ev); err != nil {
		return err
	}
	for i, r := range t.eng.Summary().Rules {
		if r.Errors > before[i].Errors && i < len(t.cur.Rules) {
			t.cur.Rules[i].Error = r.LastError
		}
	}
	cur := t.cur
	t.cur = nil
	return t.emit(cur)
}

// Close releases the tracer.
func (t *Tracer) Close(ctx context.Context) error { return t.eng.Close(ctx) }

// Summary returns what the tracer went through.
func (t *Tracer) Summary() Summary { return t.eng.Summary() }

func (t *Tracer) output(o Output) error {
	if t.cur == nil {
		return nil
	}
	if o.Event == nil || len(t.cur.Rules) == 0 {
		t.cur.Ticks = append(t.cur.Ticks, o)
		return nil
	}
	i := t.eng.index[o.Rule]
	t.cur.Rules[i].Outputs = append(t.cur.Rules[i].Outputs, json.RawMessage(o.Line))
	return nil
}

// explain explains every rule on ev before the engine runs it.
func (t *Tracer) explain(ev *Event) error {
	routable := ruletest.Routable(string(ev.Envelope.Type))
	in := &rulesql.Input{Raw: ev.Payload, Topic: ev.Envelope.Topic, ClientID: ev.Envelope.ClientID, Principal: ev.Envelope.Principal,
		Thing: ev.Thing, Timestamp: ev.Envelope.ReceivedAt / int64(time.Millisecond), Partition: ev.Partition, Offset: ev.Offset}
	if v, err := payload.Decode(ev.Payload); err == nil {
		in.Payload = v
	} else {
		in.Payload = rulesql.Undefined
	}
	matched := map[*rulesql.Rule]bool{}
	if routable {
		for _, r := range t.set.Router.Match(ev.Envelope.Topic) {
			matched[r] = true
		}
	}
	for _, r := range t.set.Rules {
		rt := RuleTrace{Rule: r.Name, Filter: r.Topic, Matched: matched[r]}
		if rt.Matched {
			e := r.Explain(in, t.st)
			rt.Where, rt.Undefined, rt.Holds = whereText(e.Where), e.Undefined, e.Fired
			if e.Err != nil {
				rt.Error = e.Err.Error()
			}
			switch {
			case r.For != nil && rt.Holds && rulesql.IsUndefined(e.Output):
				rt.Holds, rt.Note = false, "the output is Undefined: the condition is taken not to hold"
			case r.For != nil && rt.Holds:
				rt.Note = fmt.Sprintf("FOR %s: the condition holds (the rule fires once it has held that long)", r.For.Duration)
			case r.For != nil:
				rt.Note = fmt.Sprintf("FOR %s: the condition does not hold (an episode in progress ends)", r.For.Duration)
			case r.Window != nil && rt.Holds:
				rt.Note = "the event enters the rule's windows (rows come when a window closes)"
			case rt.Holds && rulesql.IsUndefined(e.Output):
				rt.Holds, rt.Note = false, "the output is Undefined: nothing is sent"
			}
		}
		t.cur.Rules = append(t.cur.Rules, rt)
	}
	return nil
}

// whereText renders a WHERE value.
func whereText(v any) string {
	switch {
	case rulesql.IsUndefined(v):
		return "Undefined"
	case v == true:
		return "true"
	case v == false:
		return "false"
	}
	b, err := value.MarshalJSON(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// AppendTraceText appends a trace as text: the event's line, what the
// ticks before it fired, then a line per rule.
func AppendTraceText(dst []byte, tr *EventTrace) []byte {
	for _, o := range tr.Ticks {
		dst = append(dst, "tick "...)
		dst = o.At.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z")
		dst = append(append(append(dst, ": "...), o.Line...), '\n')
	}
	dst = AppendText(dst, tr.Event)
	if tr.Event.Err == nil && len(tr.Rules) > 0 && !ruletest.Routable(string(tr.Event.Envelope.Type)) {
		return append(dst, "  rules do not see "+string(tr.Event.Envelope.Type)+" events\n"...)
	}
	width := 0
	for _, r := range tr.Rules {
		width = max(width, len(r.Rule))
	}
	for _, r := range tr.Rules {
		dst = fmt.Appendf(dst, "  %-*s  ", width, r.Rule)
		if !r.Matched {
			dst = fmt.Appendf(dst, "topic does not match FROM '%s'\n", r.Filter)
			continue
		}
		dst = append(dst, "WHERE "+r.Where...)
		if len(r.Undefined) > 0 {
			dst = append(dst, " (Undefined: "+strings.Join(r.Undefined, ", ")+")"...)
		}
		if r.Note != "" {
			dst = append(dst, "; "+r.Note...)
		}
		switch {
		case r.Error != "":
			dst = append(dst, "; error: "+r.Error...)
		case len(r.Outputs) > 0:
			dst = append(dst, "; fired"...)
		case r.Note == "":
			dst = append(dst, "; not fired"...)
		}
		dst = append(dst, '\n')
		for _, o := range r.Outputs {
			dst = append(append(append(dst, "      -> "...), o...), '\n')
		}
	}
	return dst
}

// AppendTraceJSON appends a trace as one JSON line: the event (as
// iotpipe events --json writes it), the ticks' outputs, the rules.
func AppendTraceJSON(dst []byte, tr *EventTrace) ([]byte, error) {
	ev, err := AppendJSON(nil, tr.Event)
	if err != nil {
		return dst, err
	}
	ticks := make([]json.RawMessage, len(tr.Ticks))
	for i, o := range tr.Ticks {
		ticks[i] = o.Line
	}
	out, err := json.Append(dst, struct {
		Event json.RawMessage   `json:"event"`
		Ticks []json.RawMessage `json:"ticks,omitempty"`
		Rules []RuleTrace       `json:"rules"`
	}{ev[:len(ev)-1], ticks, tr.Rules}, 0)
	if err != nil {
		return dst, fmt.Errorf("encode trace of %d/%d: %w", tr.Event.Partition, tr.Event.Offset, err)
	}
	return append(out, '\n'), nil
}
