package shadow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas/payload"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Reader answers rulesql's get_thing_shadow() for the rules processor,
// inside the transaction of the event being processed: the shadow of a
// thing whose events are in the event's partition is read through the
// batch (so a rule sees the updates of earlier events of the same batch,
// and of the same event when the shadow processor runs first); the
// shadow of a thing in another partition comes from a TopicView of the
// shadows topic. The document is the get answer at the given time (the
// event's), never the wall clock.
type Reader struct {
	remote *TopicView
}

// NewReader returns a Reader; remote may be nil (shadows of other
// partitions then read as missing).
func NewReader(remote *TopicView) *Reader { return &Reader{remote: remote} }

// ThingShadow returns thing's shadow (name "" for the classic one) as
// AWS's get would return it at time at, decoded; ok is false when it
// does not exist.
func (r *Reader) ThingShadow(tx *processors.Tx, thing, name string, at time.Time) (any, bool, error) {
	var get func(key []byte) ([]byte, bool, error)
	if tx.PartitionOf([]byte(thing)) == tx.Partition() {
		get = func(key []byte) ([]byte, bool, error) { return tx.Lookup(Name, key) }
	} else if r.remote != nil {
		get = r.remote.get
	} else {
		return nil, false, nil
	}
	body, rej, err := ReadDocument(get, thing, name, at)
	if err != nil || rej != nil {
		return nil, false, err
	}
	doc, err := payload.Decode(body)
	if err != nil {
		return nil, false, err
	}
	return doc, true, nil
}

// TopicView is a read-only copy of every shadow's latest document, kept
// by reading the compacted shadows topic (read committed) from its start
// and following it. It serves the shadows of partitions a node does not
// process; like any view of another partition it lags behind that
// partition's processing.
type TopicView struct {
	factory processors.ClientFactory
	topic   string
	log     *slog.Logger

	mu   sync.RWMutex
	docs map[string][]byte
}

// NewTopicView returns a view of topic (the shadows topic); Run fills it.
func NewTopicView(factory processors.ClientFactory, topic string, log *slog.Logger) *TopicView {
	if log == nil {
		log = slog.Default()
	}
	return &TopicView{factory: factory, topic: topic, log: log, docs: map[string][]byte{}}
}

// Run follows the topic until ctx ends.
func (v *TopicView) Run(ctx context.Context) error {
	cl, err := v.factory.Client(
		kgo.ConsumeTopics(v.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	if err != nil {
		return fmt.Errorf("shadow view of %s: %w", v.topic, err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(_ string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				v.log.Warn("shadow view fetch", "topic", v.topic, "partition", p, "err", err)
			}
		})
		v.mu.Lock()
		fs.EachRecord(func(r *kgo.Record) {
			if r.Value == nil {
				delete(v.docs, string(r.Key))
				return
			}
			v.docs[string(r.Key)] = r.Value
		})
		v.mu.Unlock()
	}
}

// get reads a shadow key (see Key) as the shadow processor's state holds
// it.
func (v *TopicView) get(key []byte) ([]byte, bool, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	b, ok := v.docs[string(key)]
	return b, ok, nil
}
