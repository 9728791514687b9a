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
	// Shadows is the compacted shadow changelog, keyed by thing/shadow.
	Shadows string
	// Anomalies holds anomaly detector results.
	Anomalies string
	// Aggregates holds closed window results.
	Aggregates string
	// DLQ holds what could not be processed, with the reason.
	DLQ string
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
	}
}

// All returns every topic name, events first.
func (t Topics) All() []string {
	return []string{t.Events, t.Outbound, t.Actions, t.Shadows, t.Anomalies, t.Aggregates, t.DLQ}
}

// Compacted reports whether topic keeps only the latest record per key.
func (t Topics) Compacted(topic string) bool { return topic == t.Shadows }
