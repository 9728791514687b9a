package main

import (
	"context"

	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/twmb/franz-go/pkg/kadm"
)

// actionsGroup is the consumer group of the action executors that run on
// the processor runtime (republish, command, kafka).
const actionsGroup = "iotpipe-actions"

// legacyStart returns where a partition of topic with no executor state
// starts: at the lowest offset the consumer groups of earlier iotpipe
// versions (one per executor) committed for it, so an upgrade neither
// skips an action nor executes the whole topic again. A group without a
// commit there (it executed nothing: a new deployment, or an executor
// that never ran) means the topic's start.
func legacyStart(lg *eventlog.Log, topic string, groups ...string) func(context.Context, int32) (int64, bool) {
	return func(ctx context.Context, p int32) (int64, bool) {
		cl, err := lg.Client()
		if err != nil {
			return 0, false
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		best := int64(-1)
		for _, g := range groups {
			offs, err := adm.FetchOffsets(ctx, g)
			if err != nil {
				return 0, false
			}
			o, ok := offs.Lookup(topic, p)
			if !ok || o.Err != nil || o.At < 0 {
				return 0, false
			}
			if best < 0 || o.At < best {
				best = o.At
			}
		}
		return best, best >= 0
	}
}
