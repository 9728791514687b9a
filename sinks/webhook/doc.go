// Package webhook is the webhook action executor: a consumer group
// (iotpipe-webhook by default) over the actions topic (read committed)
// that POSTs the payload of every action of type "webhook" to its target
// URL, never again once delivered (see Effects), and writes what it cannot
// deliver to the dead-letter topic with the reason.
//
// # Requests
//
// Each firing is one HTTP POST to Params["url"] whose body is the action's
// payload (the JSON bytes exactly as the rules processor wrote them), with:
//
//	Content-Type: application/json
//	Idempotency-Key: <Action.Key, the same on every attempt and redelivery>
//	X-Iotpipe-Timestamp: <Unix seconds of this attempt>
//	X-Iotpipe-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//
// plus the headers of Params["headers"] (an object of strings or arrays of
// strings). The secret is Params["secret"] when the action has one, else
// Options.Secret; with neither, the request is sent unsigned (no signature
// or timestamp header).
//
// # Verifying a request (receiver side)
//
//  1. Read the raw body bytes (before any JSON decoding).
//  2. Compute HMAC-SHA256 with the shared secret over the timestamp header
//     value, a ".", then the body; hex-encode it and prefix "sha256=".
//  3. Compare it with X-Iotpipe-Signature in constant time
//     (hmac.Equal), and reject timestamps too far from your clock (for
//     example 5 minutes) to stop replays.
//  4. Drop duplicates by Idempotency-Key: a crash of the executor can
//     send a firing again (see Effects).
//
// Verify does steps 2 and 3; VerifyRequest does steps 1 to 3 (dedup is yours):
//
//	body, err := webhook.VerifyRequest(r, secret, time.Now(), 5*time.Minute)
//
// # Retries and the dead-letter topic
//
// Each attempt is bounded by Options.RequestTimeout (10s), or the action's
// "timeout" param (seconds, at most 300). Network errors, timeouts, 408,
// 429 and 5xx are retried with exponential backoff and full jitter (a
// Retry-After header on 429 or 503 sets the wait instead), until
// Options.MaxAttempts attempts or Options.MaxElapsed since the first
// attempt. Other statuses (3xx, since redirects are not followed, and 4xx)
// are final at once. A firing that is not delivered is written to the DLQ
// topic: key = the action record's key, value = the action record's value
// unchanged, headers dlq.stage=webhook, dlq.reason, dlq.kind (rejected,
// exhausted or invalid), dlq.status, dlq.attempts, dlq.error, dlq.url and
// dlq.source (topic/partition/offset of the action record).
// ParseDeadLetter reads such a record back.
//
// # Concurrency and isolation
//
// Each target (scheme://host:port) has Options.TargetConcurrency slots
// (requests in flight, 16) and each rule at most RuleConcurrency of a
// target's slots (half of them); a freed slot goes to the rule with the
// fewest requests in flight, and a firing waiting for its next attempt
// holds no slot. So a target or path that hangs holds at most its rule's
// share of the host for at most one timeout, and never starves another
// rule's firings. Firings waiting per target are bounded by
// Options.TargetQueue; past it, reading the log pauses.
//
// # Effects
//
// A delivered (or dead-lettered) firing is recorded in the executor's
// ledger (package ledger: the compacted topic iotpipe.executed, one record
// per actions partition) every Options.CommitInterval, before the consumer
// group offsets are committed; a partition resumes at its ledger's offset
// and skips what the ledger says is done, on a restart and on another
// instance after a rebalance. An action record repeating the key of one
// delivered or in flight (a processor that emitted it again) is skipped.
// Only a crash of the executor can send a firing twice: one that was in
// flight, or done in the last CommitInterval (100ms), with the same
// Idempotency-Key. A stop (Run's context ending) or a rebalance gives the
// requests in flight DrainTimeout to finish and records what was done; it
// repeats only a request it had to cut (a target hanging past the drain),
// which the next owner sends again.
package webhook
