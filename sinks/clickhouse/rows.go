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
	ddl "github.com/iotpipe/iotpipe/schemas/clickhouse"
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
	src          string
	partition    int32
	offset       int64
}

func (anomalyRow) tableName() string   { return "anomalies" }
func (r *anomalyRow) time() time.Time  { return r.detectedAt }
func (r *anomalyRow) sourceID() string { return r.src }

type aggregateRow struct {
	thing, rule            string
	windowStart, windowEnd time.Time
	values                 map[string]float64
	payload                string
	src                    string
	partition              int32
	offset                 int64
}

func (aggregateRow) tableName() string   { return "aggregates" }
func (r *aggregateRow) time() time.Time  { return r.windowStart }
func (r *aggregateRow) sourceID() string { return r.src }

// ruleOutputRow is a firing of a rule's clickhouse action, for
// rule_outputs or the table the action names.
type ruleOutputRow struct {
	table     ddl.RuleTable
	thing     string
	firedAt   time.Time
	rule, key string
	payload   string
	metrics   map[string]float64
	src       string
	partition int32
	offset    int64
}

func (r *ruleOutputRow) tableName() string { return r.table.Name }
func (r *ruleOutputRow) time() time.Time   { return r.firedAt }
func (r *ruleOutputRow) sourceID() string  { return r.src }

// sourcedRow is a row of a derived table, which stores the id of the
// record it came from and keeps each id once.
type sourcedRow interface {
	row
	// sourceID is the record's id (see sourceID).
	sourceID() string
}

// sourceID is a derived record's id: its iot.src header, which a
// processor sets to the same value each time it produces the record, or,
// for a record without one, its own position "@<partition>/<offset>".
func sourceID(r *kgo.Record) string {
	if src := schemas.HeaderValue(r.Headers, schemas.HeaderSource); len(src) > 0 {
		return string(src)
	}
	return "@" + strconv.FormatInt(int64(r.Partition), 10) + "/" + strconv.FormatInt(r.Offset, 10)
}

// decoder turns records of iotpipe's topics into rows.
type decoder struct {
	topics     schemas.Topics
	maxPayload int
}

// decode returns the row for r, nil when the record is not for
// ClickHouse (a tombstone, a transaction marker, an action of another
// type), or an error wrapping errUnstorable with the reason.
func (d *decoder) decode(r *kgo.Record) (row, error) {
	var v telemetryView
	rw, err := d.decodeInto(r, new(scratch), &v)
	if rw == row(&v) {
		return v.row(), nil
	}
	return rw, err
}

// decodeInto is decode for the sink's hot path: sc is the goroutine's
// scratch, and a telemetry event is decoded into v, which aliases r and
// is valid until v is used again.
func (d *decoder) decodeInto(r *kgo.Record, sc *scratch, v *telemetryView) (row, error) {
	if r.Attrs.IsControl() {
		return nil, nil // a transaction marker: only its offset counts
	}
	switch r.Topic {
	case d.topics.Events:
		return d.event(r, sc, v)
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

// telemetryView is a telemetryRow whose bytes alias the record it came
// from and whose metrics live in a reused list: decoding one allocates
// nothing.
type telemetryView struct {
	thing, topic, clientID, principal []byte
	qos                               uint8
	retain                            bool
	receivedAt, eventTime             time.Time
	payload                           []byte
	metrics                           metricList
	partition                         int32
	offset                            int64
}

func (telemetryView) tableName() string  { return "telemetry" }
func (v *telemetryView) time() time.Time { return v.receivedAt }

// row is v as a telemetryRow that owns its values.
func (v *telemetryView) row() *telemetryRow {
	return &telemetryRow{
		thing: string(v.thing), topic: string(v.topic), clientID: string(v.clientID), principal: string(v.principal),
		qos: v.qos, retain: v.retain, receivedAt: v.receivedAt, eventTime: v.eventTime,
		payload: string(v.payload), metrics: v.metrics.toMap(), partition: v.partition, offset: v.offset,
	}
}

func (d *decoder) event(r *kgo.Record, sc *scratch, v *telemetryView) (row, error) {
	env, err := schemas.DecodeEnvelopeView(r.Headers)
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
	thing := r.Key
	if len(thing) == 0 {
		thing = env.ClientID
	}
	if string(env.Type) != string(schemas.EventPublish) {
		return &presenceRow{
			thing: string(thing), event: string(env.Type), clientID: string(env.ClientID), principal: string(env.Principal),
			topic: string(env.Topic), receivedAt: rx, payload: string(r.Value),
			partition: r.Partition, offset: r.Offset,
		}, nil
	}
	v.thing, v.topic, v.clientID, v.principal = thing, env.Topic, env.ClientID, env.Principal
	v.qos, v.retain, v.receivedAt, v.eventTime = env.QoS, env.Retain, rx, rx
	v.payload, v.partition, v.offset = r.Value, r.Partition, r.Offset
	// A payload that is not JSON is stored as received with no metrics.
	if ts, ok := sc.flatten(r.Value, &v.metrics); ok {
		if t, ok := ts.time(); ok {
			v.eventTime = t
		}
	}
	return v, nil
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
		src:        sourceID(r),
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
		values: Flatten(values, nil), payload: string(r.Value), src: sourceID(r),
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
	name, _ := a.Params["table"].(string)
	columns, _ := a.Params["columns"].(map[string]any)
	if (a.Params["table"] != nil && name == "") || (a.Params["columns"] != nil && columns == nil) {
		return nil, unstorable("clickhouse action: table is a name and columns an object of name to type; got %v and %v", a.Params["table"], a.Params["columns"])
	}
	table, err := ddl.ParseRuleTable(name, columns)
	if err != nil {
		return nil, unstorable("clickhouse action: %v", err)
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
		table: table, thing: a.Thing, firedAt: t, rule: a.Rule, key: a.Key, payload: string(out),
		metrics: Flatten(a.Payload, nil), src: sourceID(r), partition: r.Partition, offset: r.Offset,
	}, nil
}

// epochTime reads a Unix time in seconds, milliseconds, microseconds or
// nanoseconds (told apart by magnitude), or an RFC 3339 string.
func epochTime(v any) (time.Time, bool) {
	switch n := v.(type) {
	case int64:
		return epochInt(n)
	case float64:
		return epochFloat(n)
	case string:
		t, err := time.Parse(time.RFC3339Nano, n)
		if err != nil {
			return t, false
		}
		t = t.UTC()
		return t, timeInRange(t)
	}
	return time.Time{}, false
}

// epochInt is epochTime of an integer.
func epochInt(n int64) (time.Time, bool) {
	var t time.Time
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
	t = t.UTC()
	return t, timeInRange(t)
}

// epochFloat is epochTime of a non-integer number.
func epochFloat(n float64) (time.Time, bool) {
	if math.IsNaN(n) || math.IsInf(n, 0) || math.Abs(n) > 1e11 {
		return epochInt(int64(n))
	}
	sec, frac := math.Modf(n)
	t := time.Unix(int64(sec), int64(frac*1e9)).UTC()
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
