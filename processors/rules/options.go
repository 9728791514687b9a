package rules

import (
	"log/slog"
	"time"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas"
)

// Options configure a Processor. Every field is optional.
type Options struct {
	// Topics names the topics records are emitted to (Actions,
	// Anomalies, Aggregates, DLQ). Default schemas.DefaultTopics().
	Topics schemas.Topics
	// Shadow answers get_thing_shadow() (shadow.Reader does). Default
	// nil: every thing reads as having no shadow.
	Shadow ShadowReader
	// IdleAfter is how long a partition must have seen no event before
	// Tick moves its window rules' watermarks on with the clock: to the
	// watermark at the last event plus the time since, minus IdleAfter.
	// Default 0 (windows of a quiet partition close on the next tick
	// after their end plus allowed lateness).
	IdleAfter time.Duration
	// LastGoodDir, when set, keeps the running version of each rule
	// file there (under its base name), so that a file that does not
	// compile at start runs its last good version rather than nothing.
	// Default "": a restart forgets them.
	LastGoodDir string
	// MaxEventSkew bounds how far past its receive time an event's
	// EVENT TIME may be: an event further in the future goes to the DLQ
	// instead of moving its partition's windows on (one device with its
	// clock in the year 2100 would make every other device's events
	// late). Default DefaultMaxEventSkew; negative: no bound.
	MaxEventSkew time.Duration
	// DryRunOutputs, when set, makes a dry run (tx.DryRun, as in
	// iotpipe replay) also emit every rule output, of rules with actions
	// or without, as one record to this topic: the value is the output
	// line of iotpipe rules test (ruletest.EncodeOutput), the key and the
	// iot.rule header the rule's name, the iot.thing header the thing of
	// the event it renders against. A dry run's records are never
	// produced. Default "": none.
	DryRunOutputs string
	// LastOutputs is how many recent outputs Status keeps per rule.
	// Default 5.
	LastOutputs int
	// Logger receives reload and error logs. Default slog.Default().
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	def := schemas.DefaultTopics()
	set := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	set(&o.Topics.Actions, def.Actions)
	set(&o.Topics.Anomalies, def.Anomalies)
	set(&o.Topics.Aggregates, def.Aggregates)
	set(&o.Topics.DLQ, def.DLQ)
	set(&o.Topics.Events, def.Events)
	set(&o.Topics.Outbound, def.Outbound)
	set(&o.Topics.Shadows, def.Shadows)
	if o.MaxEventSkew == 0 {
		o.MaxEventSkew = DefaultMaxEventSkew
	}
	if o.LastOutputs <= 0 {
		o.LastOutputs = 5
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// DefaultMaxEventSkew is the default of Options.MaxEventSkew.
const DefaultMaxEventSkew = 15 * time.Minute

// ShadowReader answers get_thing_shadow() inside the transaction of the
// event being processed: a shadow as the batch sees it, at the event's
// time (a function of the log, so a rebuild gives the same answers).
type ShadowReader interface {
	ThingShadow(tx *processors.Tx, thing, name string, at time.Time) (doc any, ok bool, err error)
}

// txShadow binds a ShadowReader to one call's transaction and time, for
// rulesql's get_thing_shadow().
type txShadow struct {
	r  ShadowReader
	tx *processors.Tx
	at time.Time
}

func (s *txShadow) ThingShadow(thing, name string) (any, bool, error) {
	return s.r.ThingShadow(s.tx, thing, name, s.at)
}
