package schemas

// Topics names iotpipe's Kafka topics. The zero value is not useful: start
// from DefaultTopics and override what the configuration sets.
type Topics struct {
	// Events holds every inbound device event, keyed by thing name.
	Events string
	// Outbound holds messages to deliver to devices over MQTT.
	Outbound string
	// Actions holds rule firings awaiting an action executor.
	Actions string
	// Shadows is the compacted stream of accepted shadow changes, keyed
	// by thing/shadow (what the ClickHouse shadows table and the
	// cross-partition shadow view read).
	Shadows string
	// Anomalies holds anomaly detector results.
	Anomalies string
	// Aggregates holds closed window results.
	Aggregates string
	// DLQ holds what could not be processed, with the reason.
	DLQ string
	// Deliveries holds what ingest nodes did with each command of the
	// outbound topic (schemas.Delivery: delivered to a connected
	// subscriber, queued for an offline persistent session, or no
	// subscriber), for the command status.
	Deliveries string
	// Replies holds the command replies among the events (a device's
	// publish to cmd/{thing}/{id}/reply, see ParseReply), copied as they
	// are (key, payload, envelope headers) by the processors, so the
	// command status need not read every event.
	Replies string
	// Changelog is the compacted changelog of the processors' state,
	// partitioned like Events: every state write of a partition task,
	// and the next offset it reflects, so a partition's state can be
	// restored on any node (the processor runtime owns it).
	Changelog string
	// ActionsChangelog is the compacted changelog of the action
	// executors that run on the processor runtime (republish, command,
	// kafka), partitioned like Actions.
	ActionsChangelog string
	// Executed is the compacted ledger of the action executors: per
	// executor and actions partition, the ids of the effects already
	// executed, so an effect is never repeated after a restart or a
	// move of the executor.
	Executed string
	// Registry is the compacted log of the identity registry (things,
	// certificates, CA certificates, policies, tokens and their
	// attachments), keyed by entity; every ingest node materializes it.
	Registry string
}

// DefaultTopics returns the default topic names (prefix "iotpipe.").
func DefaultTopics() Topics {
	return Topics{
		Events:     "iotpipe.events",
		Outbound:   "iotpipe.outbound",
		Actions:    "iotpipe.actions",
		Shadows:    "iotpipe.shadows",
		Anomalies:  "iotpipe.anomalies",
		Aggregates: "iotpipe.aggregates",
		DLQ:        "iotpipe.dlq",
		Deliveries: "iotpipe.deliveries",
		Replies:    "iotpipe.replies",
		Changelog:  "iotpipe.changelog",
		Executed:   "iotpipe.executed",
		Registry:   "iotpipe.registry",

		ActionsChangelog: "iotpipe.changelog.actions",
	}
}

// All returns every topic name, events first.
func (t Topics) All() []string {
	return []string{t.Events, t.Outbound, t.Actions, t.Shadows, t.Anomalies, t.Aggregates, t.DLQ, t.Changelog, t.Executed, t.ActionsChangelog, t.Deliveries, t.Replies, t.Registry}
}

// Compacted reports whether topic keeps only the latest record per key.
func (t Topics) Compacted(topic string) bool {
	return topic == t.Shadows || topic == t.Changelog || topic == t.Executed || topic == t.ActionsChangelog || topic == t.Registry
}
