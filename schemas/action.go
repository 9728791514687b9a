package schemas

// Action is one rule firing's action, written to the actions topic as
// JSON before anything leaves the system. The record key is Key, the
// idempotency key; executors in sinks/ pick the records of their Type.
type Action struct {
	// Key is the idempotency key: "<partition>/<offset>/<rule>/<action index>"
	// of the event that fired the rule. Executors pass it on (webhook
	// Idempotency-Key header, command id) so targets can drop duplicates.
	Key string `json:"key"`
	// Rule is the rule's name.
	Rule string `json:"rule"`
	// Type is the action type: republish, command, webhook, kafka,
	// clickhouse.
	Type string `json:"type"`
	// Params are the action's rendered arguments (substitution templates
	// already applied), e.g. {"url": "...", "headers": {...}}.
	Params map[string]any `json:"params,omitempty"`
	// Payload is the rule's output (a JSON value).
	Payload any `json:"payload"`
	// Thing is the thing whose event fired the rule.
	Thing string `json:"thing,omitempty"`
	// FiredAt is the event's time in Unix milliseconds.
	FiredAt int64 `json:"fired_at"`
	// ErrorAction marks a firing of a rule's error action; Error says why.
	ErrorAction bool   `json:"error_action,omitempty"`
	Error       string `json:"error,omitempty"`
}
