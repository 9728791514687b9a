// Package webhook is the webhook action executor: a consumer group
// (iotpipe-webhook by default) over the actions topic that POSTs the
// payload of every action of type "webhook" to its target URL, at least
// once, and writes what it cannot deliver to the dead-letter topic with the
// reason.
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
//  4. Drop duplicates by Idempotency-Key: delivery is at least once.
//
// Verify does steps 2 and 3; VerifyRequest does steps 1 to 3 (dedup is yours):
//
//	body, err := webhook.VerifyRequest(r, secret, time.Now(), 5*time.Minute)
//
// # Retries and the dead-letter topic
//
// Network errors, timeouts, 408, 429 and 5xx are retried with exponential
// backoff and full jitter (a Retry-After header on 429 or 503 sets the
// wait instead), until Options.MaxAttempts attempts or Options.MaxElapsed
// since the first attempt. Other statuses (3xx, since redirects are not
// followed, and 4xx) are final at once. A firing that is not delivered is
// written to the DLQ topic: key = the action record's key, value = the
// action record's value unchanged, headers dlq.stage=webhook, dlq.reason,
// dlq.kind (rejected, exhausted or invalid), dlq.status, dlq.attempts,
// dlq.error, dlq.url and dlq.source (topic/partition/offset of the action
// record). ParseDeadLetter reads such a record back.
//
// # Ordering, concurrency and commits
//
// Work is partitioned by target (scheme://host:port): each target has its
// own bounded queue and its own workers, so a slow or dead target makes only
// its own queue wait. Offsets are committed in log order per partition,
// only past records that were delivered or dead-lettered, so a restart
// redelivers exactly the records not yet acknowledged.
package webhook
