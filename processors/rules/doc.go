// Package rules is the rules processor ("rules"): it runs the compiled
// rules of a rules directory (rulesql) inside the partition tasks and
// writes every firing to the log before anything leaves the system.
//
// # Per event
//
// Publishes and lifecycle events ($aws/events/presence/...) are routed
// by their MQTT topic through the rule set's topic trie. Each matching
// rule sees a rulesql.Input built from the event: the payload decoded
// once (a payload that is not JSON is Undefined, with Raw holding the
// bytes), topic, client id, principal, thing (the record key), receive
// time in ms as timestamp(), partition and offset. For every firing the
// processor emits one record per action to the actions topic: a JSON
// schemas.Action keyed by its idempotency key
//
//	<partition>/<offset>/<rule>/<action index>
//
// with the action's params rendered against the event and the rule's
// output as payload. The runtime produces the records before it commits
// the event's offset, so a firing is never lost; executors in sinks/
// carry them out.
//
// A rule whose evaluation fails (a failing shadow reader or state store,
// a GROUP BY event time that is not a number) fires its ERROR ACTION
// (key .../<rule>/error, ErrorAction set, Error the reason, payload
// {ruleName, topic, clientId, thing, failures, payload}) or, without
// one, sends the event to the DLQ (headers dlq.stage=rules, dlq.rule,
// dlq.reason, dlq.source). Other rules keep working.
//
// # Stream analytics
//
//   - pewma(): its state lives under the processor's key space ("s" +
//     rulesql's pewma key). Every pewma() column of an output that flags
//     its point also becomes a schemas.Anomaly record on the anomalies
//     topic (key = thing).
//   - GROUP BY windows: see windows.go. Results go to the aggregates
//     topic (schemas.Aggregate, key = group key or the rule name) and
//     fire the rule's actions with the AggregateRow output, keys
//     "<partition>/w<start>.<revision>.<fnv32(group key)>/<rule>/<i>".
//     Late events go to the DLQ with the reason. A partition with no
//     events has its watermarks moved on by Tick (Options.IdleAfter).
//   - WHERE ... FOR: see durations.go. Due timers fire in Tick (tx.Now).
//
// # State key layout (inside the runtime's "rules" namespace)
//
//	"s" | pewma key                                 -> pewma state
//	"w" | rule | 0 | fingerprint | 0 | "a" | i | 0 | window keys -> aggregator i
//	"w" | rule | 0 | fingerprint | 0 | "g" | group key           -> last event of the group
//	"t" | rule | 0 | fingerprint | 0 | "x" | timer keys          -> duration timers
//	"t" | rule | 0 | fingerprint | 0 | "e" | thing               -> duration episode
//
// The fingerprint encodes the window (or duration) definition, so
// editing it starts the rule's windows afresh instead of misreading old
// state. Replays (tx.DryRun) evaluate and emit as usual; the runtime
// discards what they emit, and counters are left alone.
//
// # Hot reload
//
// Reload(dir) and Watch(ctx, dir, interval) compile the directory's
// files and swap the rule set atomically. A file that fails keeps its
// last good version running; the error shows in Status (GET /api/rules
// via Handler), in the log and in iotpipe_rules_file_errors.
package rules
