package rules

import (
	"encoding/binary"
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
	tm *timer.Timers
	ts subStore // the timer library's keys
	es subStore // episode records, by thing
	// buf and in are scratch space for encoding an episode record and
	// its event.
	buf, in []byte
}

// bind sets the call d's stores read and write through.
func (d *durationRun) bind(tx *processors.Tx) {
	d.ts.bind(tx)
	d.es.bind(tx)
}

// episodeRecord is kept per thing while its condition holds. It is
// stored in a binary form (storedVersion, Start as a varint, then Input,
// Output and Fired with their uvarint lengths); state written before
// that form holds it as JSON (jsonEpisode), which is still read.
type episodeRecord struct {
	Start  int64  // offset of the first event
	Input  []byte // last event at which the condition held (see storedInput)
	Output []byte // its output, JSON
	Fired  []byte // the output it fired with, JSON; empty until it fired
}

// jsonEpisode is the JSON form of an episode record.
type jsonEpisode struct {
	Start  int64           `json:"start"`
	Input  json.RawMessage `json:"in"`
	Output json.RawMessage `json:"out"`
	Fired  json.RawMessage `json:"fired,omitempty"`
}

func (e *episodeRecord) appendBinary(b []byte) []byte {
	b = append(b, storedVersion)
	b = binary.AppendVarint(b, e.Start)
	for _, f := range [...][]byte{e.Input, e.Output, e.Fired} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	return b
}

// decodeEpisode decodes an episode record, binary or JSON; the record
// keeps slices of b.
func decodeEpisode(b []byte) (*episodeRecord, error) {
	if len(b) > 0 && b[0] == '{' {
		var j jsonEpisode
		if err := json.Unmarshal(b, &j); err != nil {
			return nil, err
		}
		return (&episodeRecord{Start: j.Start, Input: j.Input, Output: j.Output, Fired: j.Fired}).clean(), nil
	}
	r := reader{b: b}
	if r.byte() != storedVersion {
		return nil, fmt.Errorf("%w: unknown version", errCorrupt)
	}
	e := &episodeRecord{Start: r.varint(), Input: r.bytes(), Output: r.bytes(), Fired: r.bytes()}
	if r.bad || len(r.b) > 0 {
		return nil, fmt.Errorf("%w (%d bytes)", errCorrupt, len(b))
	}
	return e.clean(), nil
}

// clean makes e's empty fields nil.
func (e *episodeRecord) clean() *episodeRecord {
	for _, f := range [...]*[]byte{&e.Input, &e.Output, &e.Fired} {
		if len(*f) == 0 {
			*f = nil
		}
	}
	return e
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
		tm: tm,
		ts: subStore{prefix: append(append([]byte(nil), ri.ns...), 'x')},
		es: subStore{prefix: append(append([]byte(nil), ri.ns...), 'e')},
	}
	ps.timers[string(ri.ns)] = d
	return d, nil
}

func (d *durationRun) episode(st *subStore, thing string) (*episodeRecord, error) {
	b, ok, err := st.Get([]byte(thing))
	if err != nil || !ok {
		return nil, err
	}
	e, err := decodeEpisode(b)
	if err != nil {
		return nil, fmt.Errorf("decode episode of %s: %w", thing, err)
	}
	return e, nil
}

func (d *durationRun) putEpisode(st *subStore, thing string, e *episodeRecord) error {
	d.buf = e.appendBinary(d.buf[:0])
	return st.Set([]byte(thing), d.buf)
}

// durationEvent observes the rule's condition on an event.
func (p *Processor) durationEvent(tx *processors.Tx, ps *partState, ri *ruleInfo, ev *processors.Event, in *rulesql.Input, st *subStore) error {
	r := ri.rule
	out, holds, err := ps.eval.Eval(r, in, st)
	if err != nil {
		return p.ruleError(tx, ri, ev, in, err)
	}
	if rulesql.IsUndefined(out) {
		holds = false
	}
	d, err := p.durationRun(ps, ri)
	if err != nil {
		return err
	}
	d.bind(tx)
	since, active, err := d.tm.Since(&d.ts, in.Thing)
	switch {
	case err != nil:
		return err
	case !holds && !active:
		// Without an episode in progress there is nothing to end (an
		// episode record exists only beside its timer's episode).
		return nil
	case active && in.Timestamp < since.UnixMilli():
		// Older than the episode (out of order): the timer ignores it,
		// and so do its record and actions.
		return nil
	}
	es := &d.es
	ep, err := d.episode(es, in.Thing)
	if err != nil {
		return err
	}
	if holds {
		o, err := value.MarshalJSON(out)
		if err != nil {
			return fmt.Errorf("encode output: %w", err)
		}
		if ep == nil {
			ep = &episodeRecord{Start: ev.Offset}
		}
		d.in = appendInput(d.in[:0], in)
		ep.Input, ep.Output = d.in, o
	}
	evs, err := d.tm.Observe(&d.ts, in.Thing, holds, time.UnixMilli(in.Timestamp))
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
			if err := p.durationResolve(tx, ri, ep, in); err != nil {
				return err
			}
		}
	}
	switch {
	case holds:
		return d.putEpisode(es, in.Thing, ep)
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
func (p *Processor) durationResolve(tx *processors.Tx, ri *ruleInfo, ep *episodeRecord, in *rulesql.Input) error {
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
	if err := p.act(tx, ri, in, out, eventBase(in.Partition, in.Offset), in.Timestamp); err != nil {
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
	d.bind(tx)
	evs, err := d.tm.Fire(&d.ts, now)
	if err != nil {
		return err
	}
	es := &d.es
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
		if err := d.putEpisode(es, e.Key, ep); err != nil {
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
