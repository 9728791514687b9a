// Package republish is the executor of the republish and command
// actions: a processor (Executor.Process) that the processor runtime
// runs over the actions topic, in the action executors' consumer group,
// turning each such firing into a message for devices on the outbound
// topic (iotpipe.outbound), which ingest publishes over MQTT. The
// outbound record is written in the batch's transaction with the
// executor's offset, so it is written exactly once: a crash, a restart
// or a move of the executor never sends a command again. Each outbound
// record carries the action's idempotency key in the header iot.action.
//
// # republish
//
//	republish(topic => 'alerts/${topic(2)}', qos => 1, retain => false, payload => '...')
//
// publishes to Params.topic with Params.qos (0 or 1, default 0) and
// Params.retain (default false). The payload is Params.payload when the
// action has one (a string is sent as is, anything else as JSON),
// otherwise the rule's output as JSON. The record key is the action's
// thing.
//
// # command
//
//	command(thing => '${topic(2)}', topic => 'greenhouse/${topic(2)}/shade', payload => '{"shade": "close"}')
//
// sends a command to a device: a QoS 1 outbound message (ingest keeps
// it for an offline device with a persistent session and delivers it on
// reconnect) to Params.topic, or by default to
//
//	cmd/{thing}/{id}
//
// where {id} is the command id, the action's idempotency key
// ("<partition>/<offset>/<rule>/<action>", so it spans several topic
// levels). The payload is Params.payload or the rule's output; when it
// is a JSON object the executor adds "command_id" and "reply_topic" to
// it (unless present), so a device that received it on any topic knows
// how to answer. The device acknowledges by publishing to
//
//	cmd/{thing}/{id}/reply
//
// with any payload (the reply, kept as the command's result).
//
// # Command status
//
// GET /api/commands/{id} (Executor.Handler) returns
//
//	{"id": "0/17/shade/0", "thing": "gh-1", "rule": "shade", "topic": "greenhouse/gh-1/shade",
//	 "state": "acknowledged", "fired_at": ..., "sent_at": ..., "delivered_at": ...,
//	 "acknowledged_at": ..., "nodes": {"node-a": "delivered"}, "reply": {...}}
//
// with state pending (the firing is on the actions log), sent (its
// outbound record is on the log, for the ingest nodes), then what the
// ingest nodes did with it (the best of their reports on the deliveries
// topic): no_subscriber (no session subscribed to its topic), queued
// (kept for an offline persistent session, sent when it reconnects) or
// delivered (handed to a connected subscriber), and acknowledged (the
// device replied). The status is kept in memory and rebuilt from the
// log by Run: a group-less consumer reads the actions, outbound,
// deliveries and replies topics from Options.StatusWindow ago (default
// 24h) and keeps reading them (never the events topic: the processors'
// runner copies each reply event to the replies topic, see
// processors/replies), so any instance answers for any command of that
// window, and a restart loses nothing the log still holds. Entries
// older than the window are dropped.
package republish
