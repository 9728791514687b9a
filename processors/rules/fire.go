package rules

import (
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/rulesql/ruletest"
	"github.com/iotpipe/iotpipe/rulesql/value"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/iotpipe/iotpipe/schemas/payload"
)

// Record headers the rules processor adds to what it emits.
const (
	// HeaderRule names the rule a record comes from.
	HeaderRule = "iot.rule"
	// HeaderThing names the thing of a dry run's output record (see
	// Options.DryRunOutputs).
	HeaderThing = "iot.thing"
)

// fire writes one action record per action of the rule for one output:
// key base/rule/i. in renders the action templates; firedAt is the
// event time in Unix ms.
func (p *Processor) fire(tx *processors.Tx, ri *ruleInfo, in *rulesql.Input, out any, base string, firedAt int64) error {
	if err := p.act(tx, ri, in, out, base, firedAt); err != nil {
		return err
	}
	return p.dryRunOutput(tx, ri, in, out, false)
}

// dryRunOutput emits, in a dry run with Options.DryRunOutputs set, the
// output as iotpipe rules test prints it.
func (p *Processor) dryRunOutput(tx *processors.Tx, ri *ruleInfo, in *rulesql.Input, out any, resolved bool) error {
	if p.opts.DryRunOutputs == "" || !tx.DryRun() {
		return nil
	}
	r := ri.rule
	o := ruletest.Output{Rule: r.Name, Output: out, Resolved: resolved}
	if len(r.Actions) > 0 {
		o.Actions = r.ActionTargets(in)
	}
	b, err := ruletest.EncodeOutput(o)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	tx.Emit(&kgo.Record{Topic: p.opts.DryRunOutputs, Key: []byte(r.Name), Value: b,
		Headers: []kgo.RecordHeader{{Key: HeaderRule, Value: []byte(r.Name)}, {Key: HeaderThing, Value: []byte(in.Thing)}}})
	return nil
}

// act writes the action records of one output (see fire).
func (p *Processor) act(tx *processors.Tx, ri *ruleInfo, in *rulesql.Input, out any, base string, firedAt int64) error {
	r := ri.rule
	payload, err := value.MarshalJSON(out)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	for i, a := range r.Actions {
		act := schemas.Action{
			Key:     actionKey(base, r.Name, strconv.Itoa(i)),
			Rule:    r.Name,
			Type:    a.Type,
			Params:  a.Render(in),
			Payload: json.RawMessage(payload),
			Thing:   in.Thing,
			FiredAt: firedAt,
		}
		if err := p.emitAction(tx, &act); err != nil {
			return err
		}
		if !tx.DryRun() {
			ri.cActions[i].Inc()
		}
	}
	if !tx.DryRun() {
		ri.stats.fire(out, firedAt, p.opts.LastOutputs)
		ri.cFired.Inc()
	}
	return nil
}

func actionKey(base, rule, action string) string {
	return base + "/" + rule + "/" + action
}

func (p *Processor) emitAction(tx *processors.Tx, a *schemas.Action) error {
	b, err := appendAction(make([]byte, 0, 256), a)
	if err != nil {
		return fmt.Errorf("encode action %s: %w", a.Key, err)
	}
	tx.Emit(&kgo.Record{
		Topic:   p.opts.Topics.Actions,
		Key:     []byte(a.Key),
		Value:   b,
		Headers: []kgo.RecordHeader{{Key: HeaderRule, Value: []byte(a.Rule)}},
	})
	return nil
}

// appendAction encodes a as json.Marshal would (the schemas.Action
// field names and omitempty rules), without reflection on the struct:
// the hot path of every firing.
func appendAction(b []byte, a *schemas.Action) ([]byte, error) {
	var err error
	str := func(name, v string, omitEmpty bool) {
		if omitEmpty && v == "" || err != nil {
			return
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(append(b, name...), ':')
		b, err = json.Append(b, v, 0)
	}
	b = append(b, '{')
	str(`"key"`, a.Key, false)
	str(`"rule"`, a.Rule, false)
	str(`"type"`, a.Type, false)
	if len(a.Params) > 0 && err == nil {
		b = append(b, `,"params":`...)
		b, err = payload.AppendEncode(b, value.Clean(a.Params))
	}
	if err == nil {
		b = append(b, `,"payload":`...)
		switch v := a.Payload.(type) {
		case json.RawMessage:
			b = append(b, v...)
		default:
			b, err = payload.AppendEncode(b, value.Clean(v))
		}
	}
	str(`"thing"`, a.Thing, true)
	if err == nil {
		b = append(b, `,"fired_at":`...)
		b = strconv.AppendInt(b, a.FiredAt, 10)
	}
	if a.ErrorAction && err == nil {
		b = append(b, `,"error_action":true`...)
	}
	str(`"error"`, a.Error, true)
	return append(b, '}'), err
}

// ruleError handles a rule that failed on an event: its error action
// fires (AWS's errorAction), or, when it has none, the event goes to
// the DLQ with the reason. The other rules are not affected.
func (p *Processor) ruleError(tx *processors.Tx, ri *ruleInfo, ev *processors.Event, in *rulesql.Input, cause error) error {
	r := ri.rule
	if !tx.DryRun() {
		ri.stats.fail(cause)
		ri.cErrors.Inc()
	}
	if ea := r.ErrorAction; ea != nil {
		act := schemas.Action{
			Key:         actionKey(eventBase(ev.Partition, ev.Offset), r.Name, "error"),
			Rule:        r.Name,
			Type:        ea.Type,
			Params:      ea.Render(in),
			Payload:     errorPayload(r.Name, in, cause),
			Thing:       in.Thing,
			FiredAt:     in.Timestamp,
			ErrorAction: true,
			Error:       cause.Error(),
		}
		if err := p.emitAction(tx, &act); err != nil {
			return err
		}
		if !tx.DryRun() {
			ri.cErrorAction.Inc()
		}
		return nil
	}
	p.dlqEvent(tx, ev, r.Name, cause)
	return nil
}

// errorPayload is the payload of an error action, after AWS's: the rule,
// the failure, and the message that caused it.
func errorPayload(rule string, in *rulesql.Input, cause error) map[string]any {
	m := map[string]any{
		"ruleName": rule, "topic": in.Topic, "clientId": in.ClientID, "thing": in.Thing,
		"failures":  []any{map[string]any{"errorMessage": cause.Error()}},
		"timestamp": in.Timestamp, "partition": in.Partition, "offset": in.Offset,
	}
	if rulesql.IsUndefined(in.Payload) {
		m["base64OriginalPayload"] = value.Text(in.Raw)
	} else {
		m["payload"] = in.Payload
	}
	return m
}

// dlqEvent sends an event to the DLQ: the event's key, value and
// envelope headers, plus dlq.stage=rules, dlq.rule, dlq.reason and
// dlq.source (events topic/partition/offset).
func (p *Processor) dlqEvent(tx *processors.Tx, ev *processors.Event, rule string, cause error) {
	src := &kgo.Record{Topic: p.opts.Topics.Events, Partition: ev.Partition, Offset: ev.Offset, Key: []byte(ev.Thing), Value: ev.Payload, Headers: ev.Envelope.Headers()}
	tx.Emit(schemas.DeadLetter(p.opts.Topics.DLQ, src, Name, cause, kgo.RecordHeader{Key: "dlq.rule", Value: []byte(rule)}))
}

// dlqTick sends a failure without an event (a timer or window closed by
// Tick) to the DLQ as a JSON description.
func (p *Processor) dlqTick(tx *processors.Tx, rule string, now time.Time, cause error) {
	v, _ := json.Marshal(map[string]any{"processor": Name, "rule": rule, "time": now.UnixMilli(), "reason": cause.Error()})
	h := []kgo.RecordHeader{{Key: "dlq.rule", Value: []byte(rule)}}
	tx.Emit(&kgo.Record{Topic: p.opts.Topics.DLQ, Value: v, Headers: schemas.AppendDLQHeaders(h, Name, cause.Error(), "")})
}
