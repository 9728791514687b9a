package replay

import (
	"bytes"
	"context"
	"errors"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/segmentio/encoding/json"

	"github.com/iotpipe/iotpipe/rulesql"
)

// Change kinds of a diff.
const (
	Added   = "added"
	Removed = "removed"
	Changed = "changed"
)

// Change is one output that differs between two versions of the rules
// over the same events.
type Change struct {
	// Kind is Added (only the new rules give it), Removed (only the old)
	// or Changed (both, differently).
	Kind string `json:"change"`
	Rule string `json:"rule"`
	// Source is the event ("<partition>/<offset>") or tick
	// ("<partition>/t<ms>") the output comes from; At its time.
	Source string    `json:"source"`
	At     time.Time `json:"at"`
	// Old and New are the output lines (rules test output), nil where
	// there is none.
	Old json.RawMessage `json:"old,omitempty"`
	New json.RawMessage `json:"new,omitempty"`
}

// RuleDiff is what changed for one rule.
type RuleDiff struct {
	Rule string `json:"rule"`
	// Old and New count the rule's outputs in each version.
	Old int64 `json:"old_outputs"`
	New int64 `json:"new_outputs"`
	// Added, Removed and Changed count the changes.
	Added   int64 `json:"added"`
	Removed int64 `json:"removed"`
	Changed int64 `json:"changed"`
	// Examples are the first changes of each kind (up to DiffExamples).
	Examples []Change `json:"examples,omitempty"`
}

// Differs reports whether the rule's outputs changed.
func (r *RuleDiff) Differs() bool { return r.Added+r.Removed+r.Changed > 0 }

// DiffExamples is how many changes of each kind a RuleDiff keeps as
// examples.
const DiffExamples = 3

// Differ runs two versions of a rule set over the same events (read
// once) and compares their outputs: an output is the same when the same
// rule gives it from the same event or tick (the n-th of that rule
// there), with the same line.
type Differ struct {
	old, new *Engine
	// pending outputs of each version, since the last comparison.
	po, pn []posOutput
	rules  []*RuleDiff
	byName map[string]*RuleDiff
	each   func(Change) error
}

// NewDiffer returns a Differ of old and new; each, when not nil, gets
// every change as it is found.
func NewDiffer(old, new *rulesql.Set, opts Options, each func(Change) error) (*Differ, error) {
	d := &Differ{byName: map[string]*RuleDiff{}, each: each}
	for _, set := range []*rulesql.Set{old, new} {
		for _, r := range set.Rules {
			if d.byName[r.Name] == nil {
				d.byName[r.Name] = &RuleDiff{Rule: r.Name}
				d.rules = append(d.rules, d.byName[r.Name])
			}
		}
	}
	var err error
	if d.old, err = NewEngine(old, opts, func(o Output) error { d.po = append(d.po, posOutput{d.old.emitting, o}); return nil }); err != nil {
		return nil, err
	}
	if d.new, err = NewEngine(new, opts, func(o Output) error { d.pn = append(d.pn, posOutput{d.new.emitting, o}); return nil }); err != nil {
		d.old.Close(context.Background())
		return nil, err
	}
	return d, nil
}

// posOutput is an output and the position of the event or tick it
// comes from (step.pos).
type posOutput struct {
	pos int64
	Output
}

// Add runs one event through both versions, each at its own pace and
// with its own batches (a version with no FOR or window holds events
// across seconds): what both have emitted up to the event both reached
// covers the same events and ticks and is compared.
func (d *Differ) Add(ctx context.Context, ev *Event) error {
	if err := d.old.Add(ctx, ev); err != nil {
		return err
	}
	if err := d.new.Add(ctx, ev); err != nil {
		return err
	}
	return d.compare(min(d.old.done, d.new.done))
}

// Close runs what both versions still hold, compares it and returns the
// diff per rule (rules of the old version in load order, then those only
// in the new one).
func (d *Differ) Close(ctx context.Context) ([]RuleDiff, error) {
	err := errors.Join(d.old.Close(ctx), d.new.Close(ctx))
	if err == nil {
		err = d.compare(math.MaxInt64)
	}
	out := make([]RuleDiff, len(d.rules))
	for i, r := range d.rules {
		out[i] = *r
	}
	return out, err
}

// Summaries returns the old and the new version's summaries.
func (d *Differ) Summaries() (old, new Summary) { return d.old.Summary(), d.new.Summary() }

// outputKey identifies an output across versions: the rule, where it
// comes from, and its rank among that rule's outputs there.
type outputKey struct {
	rule, source string
	n            int
}

func keyed(outs []posOutput) ([]outputKey, map[outputKey]Output) {
	keys := make([]outputKey, len(outs))
	m := make(map[outputKey]Output, len(outs))
	rank := map[[2]string]int{}
	for i, o := range outs {
		k := [2]string{o.Rule, o.Source}
		keys[i] = outputKey{o.Rule, o.Source, rank[k]}
		rank[k]++
		m[keys[i]] = o.Output
	}
	return keys, m
}

// upTo returns how many of outs come from events and ticks at or before
// pos.
func upTo(outs []posOutput, pos int64) int {
	return sort.Search(len(outs), func(i int) bool { return outs[i].pos > pos })
}

// compare compares the outputs both versions emitted from events and
// ticks at or before pos, and keeps the rest for later.
func (d *Differ) compare(pos int64) error {
	no, nn := upTo(d.po, pos), upTo(d.pn, pos)
	if no == 0 && nn == 0 {
		return nil
	}
	po, pn := d.po[:no], d.pn[:nn]
	ko, mo := keyed(po)
	kn, mn := keyed(pn)
	for _, o := range po {
		d.byName[o.Rule].Old++
	}
	for _, o := range pn {
		d.byName[o.Rule].New++
	}
	var changes []Change
	for _, k := range ko {
		o := mo[k]
		n, ok := mn[k]
		switch {
		case !ok:
			changes = append(changes, Change{Kind: Removed, Rule: k.rule, Source: k.source, At: o.At, Old: o.Line})
		case !bytes.Equal(o.Line, n.Line):
			changes = append(changes, Change{Kind: Changed, Rule: k.rule, Source: k.source, At: o.At, Old: o.Line, New: n.Line})
		}
	}
	for _, k := range kn {
		if _, ok := mo[k]; !ok {
			n := mn[k]
			changes = append(changes, Change{Kind: Added, Rule: k.rule, Source: k.source, At: n.At, New: n.Line})
		}
	}
	slices.SortStableFunc(changes, func(a, b Change) int { return a.At.Compare(b.At) })
	d.po, d.pn = slices.Delete(d.po, 0, no), slices.Delete(d.pn, 0, nn)
	for _, c := range changes {
		r := d.byName[c.Rule]
		var n *int64
		switch c.Kind {
		case Added:
			n = &r.Added
		case Removed:
			n = &r.Removed
		default:
			n = &r.Changed
		}
		if *n++; *n <= DiffExamples {
			r.Examples = append(r.Examples, c)
		}
		if d.each != nil {
			if err := d.each(c); err != nil {
				return err
			}
		}
	}
	return nil
}

// AppendChangeText appends a change as text: "+", "-" or "~", its time,
// source and line(s).
func AppendChangeText(dst []byte, c Change) []byte {
	mark := map[string]string{Added: "+", Removed: "-", Changed: "~"}[c.Kind]
	dst = append(dst, "  "+mark+" "...)
	dst = c.At.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	dst = append(append(append(dst, ' '), c.Source...), ' ')
	switch c.Kind {
	case Added:
		dst = append(dst, c.New...)
	case Removed:
		dst = append(dst, c.Old...)
	default:
		dst = append(append(append(dst, "old "...), c.Old...), "\n      new "...)
		dst = append(dst, c.New...)
	}
	return append(dst, '\n')
}

// AppendRuleDiffText appends a rule's diff as text: its counts, then its
// examples.
func AppendRuleDiffText(dst []byte, r RuleDiff) []byte {
	dst = append(append(dst, "rule "...), r.Rule...)
	if !r.Differs() {
		return append(append(dst, ": no change ("...), strconv.FormatInt(r.Old, 10)+" outputs)\n"...)
	}
	dst = append(dst, ": "...)
	dst = strconv.AppendInt(dst, r.Added, 10)
	dst = append(dst, " added, "...)
	dst = strconv.AppendInt(dst, r.Removed, 10)
	dst = append(dst, " removed, "...)
	dst = strconv.AppendInt(dst, r.Changed, 10)
	dst = append(dst, " changed (outputs: "...)
	dst = strconv.AppendInt(dst, r.Old, 10)
	dst = append(dst, " old, "...)
	dst = strconv.AppendInt(dst, r.New, 10)
	dst = append(dst, " new)\n"...)
	for _, c := range r.Examples {
		dst = AppendChangeText(dst, c)
	}
	return dst
}
