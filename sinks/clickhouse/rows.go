package clickhouse

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/segmentio/encoding/json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/iotpipe/iotpipe/schemas/payload"
)

// errUnstorable marks a record that cannot become a row; it goes to the
// DLQ with the error as the reason.
var errUnstorable = errors.New("unstorable")

// DateTime64(3) holds 1900-01-01 .. 2299-12-31.
var (
	minTime = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2299, 12, 31, 23, 59, 59, 0, time.UTC)
)

func timeInRange(t time.Time) bool { return !t.Before(minTime) && !t.After(maxTime) }

// row is one decoded record, destined for one table.
type row interface {
	// tableName is the destination table.
	tableName() string
	// time is the row's partitioning time.
	time() time.Time
}

type telemetryRow struct {
	thing, topic, clientID, principal string
	qos                               uint8
	retain                            bool
	receivedAt, eventTime             time.Time
	payload                           string
	metrics                           map[string]float64
	partition                         int32
	offset                            int64
}

func (telemetryRow) tableName() string  { return "telemetry" }
func (r *telemetryRow) time() time.Time { return r.receivedAt }

type presenceRow struct {
	thing, event, clientID, principal, topic string
	receivedAt                               time.Time
	payload                                  string
	partition                                int32
	offset                                   int64
}

func (presenceRow) tableName() string  { return "presence" }
func (r *presenceRow) time() time.Time { return r.receivedAt }

type shadowRow struct {
	thing, shadow   string
	version         uint64
	updatedAt       time.Time
	state, metadata string
	deleted         bool
	partition       int32
	offset          int64
}

func (shadowRow) tableName() string  { return "shadows" }
func (r *shadowRow) time() time.Time { return r.updatedAt }

type anomalyRow struct {
	thing        string
	detectedAt   time.Time
	rule, metric string
	value, score float64
	payload      string
	partition    int32
	offset       int64
}

func (anomalyRow) tableName() string  { return "anomalies" }
func (r *anomalyRow) time() time.Time { return r.detectedAt }

type aggregateRow struct {
	thing, rule            string
	windowStart, windowEnd time.Time
	values                 map[string]float64
	payload                string
	partition              int32
	offset                 int64
}

func (aggregateRow) tableName() string  { return "aggregates" }
func (r *aggregateRow) time() time.Time { return r.windowStart }

type ruleOutputRow struct {
	thing     string
	firedAt   time.Time
	rule, key string
	payload   string
	metrics   map[string]float64
	partition int32
	offset    int64
}

func (ruleOutputRow) tableName() string  { return "rule_outputs" }
func (r *ruleOutputRow) time() time.Time { return r.firedAt }

// decoder turns records of iotpipe's topics into rows.
type decoder struct {
	topics     schemas.Topics
	maxPayload int
}

// decode returns the row for r, nil when the record is not for
// ClickHouse (a tombstone, an action of another type), or an error
// wrapping errUnstorable with the reason.
func (d *decoder) decode(r *kgo.Record) (row, error) {
	switch r.Topic {
	case d.topics.Events:
		return d.event(r)
	case d.topics.Shadows:
		return d.shadow(r)
	case d.topics.Anomalies:
		return d.anomaly(r)
	case d.topics.Aggregates:
		return d.aggregate(r)
	case d.topics.Actions:
		return d.action(r)
	}
	return nil, nil
}

func unstorable(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUnstorable, fmt.Sprintf(format, args...))
}

func (d *decoder) event(r *kgo.Record) (row, error) {
	env, err := schemas.DecodeEnvelope(r.Headers)
	if err != nil {
		return nil, unstorable("%v", err)
	}
	if d.maxPayload > 0 && len(r.Value) > d.maxPayload {
		return nil, unstorable("payload of %d bytes exceeds the %d-byte limit", len(r.Value), d.maxPayload)
	}
	rx := time.Unix(0, env.ReceivedAt).UTC()
	if env.ReceivedAt == 0 || !timeInRange(rx) {
		return nil, unstorable("receive time %d ns outside DateTime64 range", env.ReceivedAt)
	}
	thing := string(r.Key)
	if thing == "" {
		thing = env.ClientID
	}
	if env.Type != schemas.EventPublish {
		return &presenceRow{
			thing: thing, event: string(env.Type), clientID: env.ClientID, principal: env.Principal,
			topic: env.Topic, receivedAt: rx, payload: string(r.Value),
			partition: r.Partition, offset: r.Offset,
		}, nil
	}
	row := &telemetryRow{
		thing: thing, topic: env.Topic, clientID: env.ClientID, principal: env.Principal,
		qos: env.QoS, retain: env.Retain, receivedAt: rx, eventTime: rx,
		payload: string(r.Value), partition: r.Partition, offset: r.Offset,
	}
	// A payload that is not JSON is stored as received with no metrics.
	if m, ts, ok := flattenJSON(r.Value); ok {
		row.metrics = m
		if t, ok := epochTime(ts); ok {
			row.eventTime = t
		}
	}
	return row, nil
}

// shadowChange is the value of a record on the shadows changelog topic.
type shadowChange struct {
	Thing     string          `json:"thing"`
	Shadow    string          `json:"shadow"`
	State     json.RawMessage `json:"state"`
	Metadata  json.RawMessage `json:"metadata"`
	Version   uint64          `json:"version"`
	Timestamp json.Number     `json:"timestamp"`
	Deleted   bool            `json:"deleted"`
}

func (d *decoder) shadow(r *kgo.Record) (row, error) {
	if r.Value == nil {
		return nil, nil // tombstone of the compacted topic
	}
	var c shadowChange
	if err := json.Unmarshal(r.Value, &c); err != nil {
		return nil, unstorable("shadow change is not JSON: %v", err)
	}
	if c.Thing == "" {
		return nil, unstorable("shadow change has no thing")
	}
	t, ok := epochTime(payload.Number(string(c.Timestamp)))
	if !ok {
		return nil, unstorable("shadow change timestamp %q is not a time", c.Timestamp)
	}
	return &shadowRow{
		thing: c.Thing, shadow: c.Shadow, version: c.Version, updatedAt: t,
		state: rawString(c.State), metadata: rawString(c.Metadata), deleted: c.Deleted,
		partition: r.Partition, offset: r.Offset,
	}, nil
}

func rawString(m json.RawMessage) string {
	if len(m) == 0 || string(m) == "null" {
		return ""
	}
	return string(m)
}

// object decodes a derived record's JSON object value.
func object(r *kgo.Record, what string) (map[string]any, error) {
	v, err := payload.Decode(r.Value)
	if err != nil {
		return nil, unstorable("%s: %v", what, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, unstorable("%s is not a JSON object", what)
	}
	return m, nil
}

// first returns the first of keys present in m.
func first(m map[string]any, keys ...string) any {
	for _, k := range keys {
		if v, ok := m[k]; ok {
			return v
		}
	}
	return nil
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func num(v any) float64 {
	switch n := v.(type) {
	case int64:
		return float64(n)
	case float64:
		return n
	}
	return math.NaN()
}

// recordTime is the time named by one of keys in m, or the record's
// timestamp.
func recordTime(m map[string]any, r *kgo.Record, keys ...string) time.Time {
	if t, ok := epochTime(first(m, keys...)); ok {
		return t
	}
	return r.Timestamp.UTC()
}

func (d *decoder) anomaly(r *kgo.Record) (row, error) {
	m, err := object(r, "anomaly")
	if err != nil {
		return nil, err
	}
	thing := str(m["thing"])
	if thing == "" {
		thing = string(r.Key)
	}
	return &anomalyRow{
		thing:      thing,
		detectedAt: recordTime(m, r, "time", "timestamp", "detected_at", "at"),
		rule:       str(m["rule"]),
		metric:     str(first(m, "metric", "field")),
		value:      num(m["value"]),
		score:      num(first(m, "score", "zscore", "deviation")),
		payload:    string(r.Value),
		partition:  r.Partition, offset: r.Offset,
	}, nil
}

func (d *decoder) aggregate(r *kgo.Record) (row, error) {
	m, err := object(r, "aggregate")
	if err != nil {
		return nil, err
	}
	thing := str(m["thing"])
	if thing == "" {
		thing = string(r.Key)
	}
	start := recordTime(m, r, "window_start", "start")
	end, ok := epochTime(first(m, "window_end", "end"))
	if !ok {
		end = start
	}
	values := first(m, "values", "aggregates", "result")
	if values == nil {
		values = m
	}
	return &aggregateRow{
		thing: thing, rule: str(m["rule"]), windowStart: start, windowEnd: end,
		values: Flatten(values, nil), payload: string(r.Value),
		partition: r.Partition, offset: r.Offset,
	}, nil
}

func (d *decoder) action(r *kgo.Record) (row, error) {
	var a schemas.Action
	if err := json.Unmarshal(r.Value, &a); err != nil {
		return nil, unstorable("action is not JSON: %v", err)
	}
	if a.Type != "clickhouse" {
		return nil, nil
	}
	out, err := payload.Encode(a.Payload)
	if err != nil {
		return nil, unstorable("rule output: %v", err)
	}
	t := time.UnixMilli(a.FiredAt).UTC()
	if a.FiredAt == 0 || !timeInRange(t) {
		t = r.Timestamp.UTC()
	}
	return &ruleOutputRow{
		thing: a.Thing, firedAt: t, rule: a.Rule, key: a.Key, payload: string(out),
		metrics: Flatten(a.Payload, nil), partition: r.Partition, offset: r.Offset,
	}, nil
}

// epochTime reads a Unix time in seconds, milliseconds, microseconds or
// nanoseconds (told apart by magnitude), or an RFC 3339 string.
func epochTime(v any) (time.Time, bool) {
	var t time.Time
	switch n := v.(type) {
	case int64:
		switch a := abs(n); {
		case a < 1e11:
			t = time.Unix(n, 0)
		case a < 1e14:
			t = time.UnixMilli(n)
		case a < 1e17:
			t = time.UnixMicro(n)
		default:
			t = time.Unix(0, n)
		}
	case float64:
		if math.IsNaN(n) || math.IsInf(n, 0) || math.Abs(n) > 1e11 {
			return epochTime(int64(n))
		}
		sec, frac := math.Modf(n)
		t = time.Unix(int64(sec), int64(frac*1e9))
	case string:
		var err error
		if t, err = time.Parse(time.RFC3339Nano, n); err != nil {
			return t, false
		}
	default:
		return t, false
	}
	t = t.UTC()
	return t, timeInRange(t)
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// Flatten collects the numeric leaves of a decoded payload (see
// schemas/payload) into dst by dotted path: {"a":{"b":1},"c":[2,3]}
// gives a.b=1, c.0=2, c.1=3. A top-level number is stored under "value".
// Strings, booleans and nulls are left out. It returns dst, allocated
// when nil and there is something to store.
func Flatten(v any, dst map[string]float64) map[string]float64 {
	var path []byte
	return flatten(v, path, dst)
}

func flatten(v any, path []byte, dst map[string]float64) map[string]float64 {
	put := func(f float64) map[string]float64 {
		if dst == nil {
			dst = map[string]float64{}
		}
		key := string(path)
		if key == "" {
			key = "value"
		}
		dst[key] = f
		return dst
	}
	switch t := v.(type) {
	case int64:
		return put(float64(t))
	case float64:
		return put(t)
	case map[string]any:
		for k, x := range t {
			p := path
			if len(p) > 0 {
				p = append(p, '.')
			}
			dst = flatten(x, append(p, k...), dst)
		}
	case []any:
		for i, x := range t {
			p := path
			if len(p) > 0 {
				p = append(p, '.')
			}
			dst = flatten(x, strconv.AppendInt(p, int64(i), 10), dst)
		}
	}
	return dst
}
