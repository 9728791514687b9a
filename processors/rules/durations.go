package rules

import (
	"fmt"
	"maps"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/analytics/timer"
	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/rulesql/value"
	"github.com/iotpipe/iotpipe/schemas/payload"
)

// A WHERE ... FOR rule keeps, per thing, a timer.Timers episode (when
// the condition started holding, on receive time) and an episode record
// of its own: the offset of the event that started it, the last event at
// which the condition held and its output. The rule fires once, when
// the condition has held for the duration, whether an event or a tick
// (tx.Now) finds it due; its actions render against the last holding
// event and their keys are "<partition>/<offset of the episode's first
// event>/<rule>/<i>", the same whichever found it. With RESOLVE, the
// event at which the condition stops holding after the firing fires the
// actions again with the fired output plus "resolved": true (keys from
// that event's offset).

// durationRun is one FOR rule on one partition.
type durationRun struct {
	tm      *timer.Timers
	timerNS []byte // the timer library's keys
	epNS    []byte // episode records, by thing
}

// episodeRecord is kept per thing while its condition holds.
type episodeRecord struct {
	Start  int64           `json:"start"` // offset of the first event
	Input  json.RawMessage `json:"in"`    // last event at which the condition held
	Output json.RawMessage `json:"out"`   // its output
	Fired  json.RawMessage `json:"fired,omitempty"`
}

func (p *Processor) durationRun(ps *partState, ri *ruleInfo) (*durationRun, error) {
	if d, ok := ps.timers[string(ri.ns)]; ok {
		return d, nil
	}
	tm, err := timer.New(timer.Config{For: ri.rule.For.Duration, Resolve: ri.rule.For.Resolve})
	if err != nil {
		return nil, err
	}
	d := &durationRun{
		tm:      tm,
		timerNS: append(append([]byte(nil), ri.ns...), 'x'),
		epNS:    append(append([]byte(nil), ri.ns...), 'e'),
	}
	ps.timers[string(ri.ns)] = d
	return d, nil
}

func (d *durationRun) episode(st *subStore, thing string) (*episodeRecord, error) {
	b, ok, err := st.Get([]byte(thing))
	if err != nil || !ok {
		return nil, err
	}
	var e episodeRecord
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("decode episode of %s: %w", thing, err)
	}
	return &e, nil
}

func putEpisode(st *subStore, thing string, e *episodeRecord) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode episode of %s: %w", thing, err)
	}
	return st.Set([]byte(thing), b)
}

// durationEvent observes the rule's condition on an event.
func (p *Processor) durationEvent(tx *processors.Tx, ps *partState, ri *ruleInfo, ev *processors.Event, in *rulesql.Input, st *subStore, base string) error {
	r := ri.rule
	out, holds, err := r.Eval(in, st)
	if err != nil {
		return p.ruleError(tx, ri, ev, in, base, err)
	}
	if rulesql.IsUndefined(out) {
		holds = false
	}
	d, err := p.durationRun(ps, ri)
	if err != nil {
		return err
	}
	if !holds {
		// No episode in progress: nothing to end, fire or resolve, and no
		// episode record (one exists only during an episode).
		if in, err := d.tm.InEpisode(newSubStore(tx, d.timerNS), in.Thing); err != nil || !in {
			return err
		}
	}
	es := newSubStore(tx, d.epNS)
	ep, err := d.episode(es, in.Thing)
	if err != nil {
		return err
	}
	if holds {
		enc, err := encodeInput(in)
		if err != nil {
			return err
		}
		o, err := value.MarshalJSON(out)
		if err != nil {
			return fmt.Errorf("encode output: %w", err)
		}
		if ep == nil {
			ep = &episodeRecord{Start: ev.Offset}
		}
		ep.Input, ep.Output = enc, o
	}
	evs, err := d.tm.Observe(newSubStore(tx, d.timerNS), in.Thing, holds, time.UnixMilli(in.Timestamp))
	if err != nil {
		return err
	}
	for _, e := range evs {
		if ep == nil {
			continue // an episode without its record: nothing to render
		}
		switch e.Kind {
		case timer.Fired:
			if err := p.durationFire(tx, ri, ep, e.At.UnixMilli()); err != nil {
				return err
			}
		case timer.Resolved:
			if err := p.durationResolve(tx, ri, ep, in, base); err != nil {
				return err
			}
		}
	}
	switch {
	case holds:
		return putEpisode(es, in.Thing, ep)
	case ep != nil:
		return es.Delete([]byte(in.Thing))
	}
	return nil
}

// durationFire fires the rule's actions for an episode that has held
// for the duration.
func (p *Processor) durationFire(tx *processors.Tx, ri *ruleInfo, ep *episodeRecord, at int64) error {
	in, err := p.decodeInput(tx, ep.Input)
	if err != nil {
		return err
	}
	var out any = map[string]any{}
	if len(ep.Output) > 0 {
		if out, err = decodeJSON(ep.Output); err != nil {
			return err
		}
	}
	ep.Fired = ep.Output
	base := eventBase(in.Partition, ep.Start)
	return p.fire(tx, ri, in, out, base, at)
}

// durationResolve fires the resolved event: the fired output with
// "resolved": true, rendered against the event that ended the episode.
func (p *Processor) durationResolve(tx *processors.Tx, ri *ruleInfo, ep *episodeRecord, in *rulesql.Input, base string) error {
	var fired any = map[string]any{}
	if len(ep.Fired) > 0 {
		var err error
		if fired, err = decodeJSON(ep.Fired); err != nil {
			return err
		}
	}
	var out any
	if m, ok := fired.(map[string]any); ok {
		out = maps.Clone(m)
		out.(map[string]any)["resolved"] = true
	} else {
		out = map[string]any{"value": fired, "resolved": true}
	}
	if err := p.act(tx, ri, in, out, base, in.Timestamp); err != nil {
		return err
	}
	return p.dryRunOutput(tx, ri, in, fired, true)
}

// durationTick fires the episodes that are due at now.
func (p *Processor) durationTick(tx *processors.Tx, ps *partState, ri *ruleInfo, now time.Time) error {
	d, err := p.durationRun(ps, ri)
	if err != nil {
		return err
	}
	evs, err := d.tm.Fire(newSubStore(tx, d.timerNS), now)
	if err != nil {
		return err
	}
	es := newSubStore(tx, d.epNS)
	for _, e := range evs {
		ep, err := d.episode(es, e.Key)
		if err != nil {
			return err
		}
		if ep == nil {
			p.dlqTick(tx, ri.rule.Name, now, fmt.Errorf("duration timer of %s fired without its episode record", e.Key))
			continue
		}
		// The outputs' ids come from the timer's deadline, not from
		// when the tick ran.
		tx.At(e.At, ri.rule.Name+"\x00"+e.Key)
		if err := p.durationFire(tx, ri, ep, e.At.UnixMilli()); err != nil {
			return err
		}
		if err := putEpisode(es, e.Key, ep); err != nil {
			return err
		}
	}
	return nil
}

func decodeJSON(b []byte) (any, error) {
	v, err := payload.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("decode stored output: %w", err)
	}
	return v, nil
}
