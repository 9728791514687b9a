package clickhouse

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"time"
)

// columns is a table's rows held column by column, ready for a
// columnar insert.
type columns interface {
	// add appends one row; r is of the table's row type.
	add(r row)
	// len is the number of rows held.
	len() int
	// names are the column names in insert order.
	names() []string
	// values are the column slices, in the order of names.
	values() []any
	// reset empties the columns, keeping their capacity.
	reset()
}

func newColumns(table string) columns {
	switch table {
	case "telemetry":
		return &telemetryCols{}
	case "presence":
		return &presenceCols{}
	case "shadows":
		return &shadowCols{}
	case "anomalies":
		return &anomalyCols{}
	case "aggregates":
		return &aggregateCols{}
	}
	return &ruleOutputCols{} // rule_outputs, or a rule's own table
}

// strCol is a string column in Arrow's layout: the values back to back
// in data, value i at data[offsets[i]:offsets[i+1]].
type strCol struct {
	offsets []int32 // len()+1 offsets into data, from 0
	data    []byte
}

func (c *strCol) append(b []byte) {
	if len(c.offsets) == 0 {
		c.offsets = append(c.offsets, 0)
	}
	c.data = append(c.data, b...)
	c.offsets = append(c.offsets, int32(len(c.data)))
}

func (c *strCol) appendString(s string) {
	if len(c.offsets) == 0 {
		c.offsets = append(c.offsets, 0)
	}
	c.data = append(c.data, s...)
	c.offsets = append(c.offsets, int32(len(c.data)))
}

func (c *strCol) len() int { return max(0, len(c.offsets)-1) }

// at is value i, aliasing c.
func (c *strCol) at(i int) []byte { return c.data[c.offsets[i]:c.offsets[i+1]] }

// strings copies the column out as strings.
func (c *strCol) strings() []string {
	out := make([]string, c.len())
	for i := range out {
		out[i] = string(c.at(i))
	}
	return out
}

func (c *strCol) reset() { c.offsets, c.data = c.offsets[:0], c.data[:0] }

// telemetryCols keeps strings and metrics in Arrow's layout, so adding a
// row allocates nothing in the steady state and the Arrow insert sends
// the buffers as they are.
type telemetryCols struct {
	thing, topic, clientID, principal strCol
	qos                               []uint8
	retain                            []bool
	receivedAt, eventTime             []time.Time
	payload                           strCol
	// metrics is a map column: row i has the entries
	// metricOffsets[i]..metricOffsets[i+1] of metricNames and
	// metricVals.
	metricOffsets []int32 // len()+1 offsets, from 0
	metricNames   strCol
	metricVals    []float64
	partition     []int32
	offset        []int64
	// msBuf and bits are reused by encodeArrow.
	msBuf []int64
	bits  []byte
}

func (c *telemetryCols) add(r row) {
	switch t := r.(type) {
	case *telemetryView:
		c.thing.append(t.thing)
		c.topic.append(t.topic)
		c.clientID.append(t.clientID)
		c.principal.append(t.principal)
		c.qos = append(c.qos, t.qos)
		c.retain = append(c.retain, t.retain)
		c.receivedAt = append(c.receivedAt, t.receivedAt)
		c.eventTime = append(c.eventTime, t.eventTime)
		c.payload.append(t.payload)
		for i := range t.metrics.len() {
			c.metricNames.append(t.metrics.name(i))
		}
		c.metricVals = append(c.metricVals, t.metrics.vals...)
		c.endMetrics()
		c.partition = append(c.partition, t.partition)
		c.offset = append(c.offset, t.offset)
	case *telemetryRow:
		c.thing.appendString(t.thing)
		c.topic.appendString(t.topic)
		c.clientID.appendString(t.clientID)
		c.principal.appendString(t.principal)
		c.qos = append(c.qos, t.qos)
		c.retain = append(c.retain, t.retain)
		c.receivedAt = append(c.receivedAt, t.receivedAt)
		c.eventTime = append(c.eventTime, t.eventTime)
		c.payload.appendString(t.payload)
		for k, v := range t.metrics {
			c.metricNames.appendString(k)
			c.metricVals = append(c.metricVals, v)
		}
		c.endMetrics()
		c.partition = append(c.partition, t.partition)
		c.offset = append(c.offset, t.offset)
	default:
		panic(fmt.Sprintf("clickhouse: %T added to telemetry", r))
	}
}

// endMetrics closes the current row's map entries.
func (c *telemetryCols) endMetrics() {
	if len(c.metricOffsets) == 0 {
		c.metricOffsets = append(c.metricOffsets, 0)
	}
	c.metricOffsets = append(c.metricOffsets, int32(len(c.metricVals)))
}

// metricMaps copies the metrics column out as maps.
func (c *telemetryCols) metricMaps() []map[string]float64 {
	out := make([]map[string]float64, c.len())
	for i := range out {
		lo, hi := c.metricOffsets[i], c.metricOffsets[i+1]
		m := make(map[string]float64, hi-lo)
		for j := lo; j < hi; j++ {
			m[string(c.metricNames.at(int(j)))] = c.metricVals[j]
		}
		out[i] = m
	}
	return out
}

func (c *telemetryCols) len() int { return len(c.qos) }
func (c *telemetryCols) names() []string {
	return []string{"thing", "topic", "client_id", "principal", "qos", "retain", "received_at", "event_time", "payload", "metrics", "partition", "offset"}
}

// values copies the string and map columns out (the native insert).
func (c *telemetryCols) values() []any {
	return []any{c.thing.strings(), c.topic.strings(), c.clientID.strings(), c.principal.strings(), c.qos, c.retain,
		c.receivedAt, c.eventTime, c.payload.strings(), c.metricMaps(), c.partition, c.offset}
}

func (c *telemetryCols) reset() {
	for _, s := range []*strCol{&c.thing, &c.topic, &c.clientID, &c.principal, &c.payload, &c.metricNames} {
		s.reset()
	}
	c.qos, c.retain, c.receivedAt, c.eventTime = c.qos[:0], c.retain[:0], c.receivedAt[:0], c.eventTime[:0]
	c.metricOffsets, c.metricVals, c.partition, c.offset = c.metricOffsets[:0], c.metricVals[:0], c.partition[:0], c.offset[:0]
}

type presenceCols struct {
	thing, event, clientID, principal, topic []string
	receivedAt                               []time.Time
	payload                                  []string
	partition                                []int32
	offset                                   []int64
}

func (c *presenceCols) add(r row) {
	p := r.(*presenceRow)
	c.thing = append(c.thing, p.thing)
	c.event = append(c.event, p.event)
	c.clientID = append(c.clientID, p.clientID)
	c.principal = append(c.principal, p.principal)
	c.topic = append(c.topic, p.topic)
	c.receivedAt = append(c.receivedAt, p.receivedAt)
	c.payload = append(c.payload, p.payload)
	c.partition = append(c.partition, p.partition)
	c.offset = append(c.offset, p.offset)
}

func (c *presenceCols) len() int { return len(c.thing) }
func (c *presenceCols) names() []string {
	return []string{"thing", "event", "client_id", "principal", "topic", "received_at", "payload", "partition", "offset"}
}
func (c *presenceCols) values() []any {
	return []any{c.thing, c.event, c.clientID, c.principal, c.topic, c.receivedAt, c.payload, c.partition, c.offset}
}
func (c *presenceCols) reset() { *c = presenceCols{} }

type shadowCols struct {
	thing, shadow   []string
	version         []uint64
	updatedAt       []time.Time
	state, metadata []string
	deleted         []bool
	partition       []int32
	offset          []int64
}

func (c *shadowCols) add(r row) {
	s := r.(*shadowRow)
	c.thing = append(c.thing, s.thing)
	c.shadow = append(c.shadow, s.shadow)
	c.version = append(c.version, s.version)
	c.updatedAt = append(c.updatedAt, s.updatedAt)
	c.state = append(c.state, s.state)
	c.metadata = append(c.metadata, s.metadata)
	c.deleted = append(c.deleted, s.deleted)
	c.partition = append(c.partition, s.partition)
	c.offset = append(c.offset, s.offset)
}

func (c *shadowCols) len() int { return len(c.thing) }
func (c *shadowCols) names() []string {
	return []string{"thing", "shadow", "version", "updated_at", "state", "metadata", "deleted", "partition", "offset"}
}
func (c *shadowCols) values() []any {
	return []any{c.thing, c.shadow, c.version, c.updatedAt, c.state, c.metadata, c.deleted, c.partition, c.offset}
}
func (c *shadowCols) reset() { *c = shadowCols{} }

type anomalyCols struct {
	thing        []string
	detectedAt   []time.Time
	rule, metric []string
	value, score []float64
	payload      []string
	src          []string
	partition    []int32
	offset       []int64
}

func (c *anomalyCols) add(r row) {
	a := r.(*anomalyRow)
	c.thing = append(c.thing, a.thing)
	c.detectedAt = append(c.detectedAt, a.detectedAt)
	c.rule = append(c.rule, a.rule)
	c.metric = append(c.metric, a.metric)
	c.value = append(c.value, a.value)
	c.score = append(c.score, a.score)
	c.payload = append(c.payload, a.payload)
	c.src = append(c.src, a.src)
	c.partition = append(c.partition, a.partition)
	c.offset = append(c.offset, a.offset)
}

func (c *anomalyCols) len() int { return len(c.thing) }
func (c *anomalyCols) names() []string {
	return []string{"thing", "detected_at", "rule", "metric", "value", "score", "payload", "src", "partition", "offset"}
}
func (c *anomalyCols) values() []any {
	return []any{c.thing, c.detectedAt, c.rule, c.metric, c.value, c.score, c.payload, c.src, c.partition, c.offset}
}
func (c *anomalyCols) reset()              { *c = anomalyCols{} }
func (c *anomalyCols) sourceIDs() []string { return c.src }

type aggregateCols struct {
	thing, rule            []string
	windowStart, windowEnd []time.Time
	values_                []map[string]float64
	payload                []string
	src                    []string
	partition              []int32
	offset                 []int64
}

func (c *aggregateCols) add(r row) {
	a := r.(*aggregateRow)
	c.thing = append(c.thing, a.thing)
	c.rule = append(c.rule, a.rule)
	c.windowStart = append(c.windowStart, a.windowStart)
	c.windowEnd = append(c.windowEnd, a.windowEnd)
	v := a.values
	if v == nil {
		v = map[string]float64{}
	}
	c.values_ = append(c.values_, v)
	c.payload = append(c.payload, a.payload)
	c.src = append(c.src, a.src)
	c.partition = append(c.partition, a.partition)
	c.offset = append(c.offset, a.offset)
}

func (c *aggregateCols) len() int { return len(c.thing) }
func (c *aggregateCols) names() []string {
	return []string{"thing", "rule", "window_start", "window_end", "`values`", "payload", "src", "partition", "offset"}
}
func (c *aggregateCols) values() []any {
	return []any{c.thing, c.rule, c.windowStart, c.windowEnd, c.values_, c.payload, c.src, c.partition, c.offset}
}
func (c *aggregateCols) reset()              { *c = aggregateCols{} }
func (c *aggregateCols) sourceIDs() []string { return c.src }

type ruleOutputCols struct {
	thing     []string
	firedAt   []time.Time
	rule, key []string
	payload   []string
	metrics   []map[string]float64
	src       []string
	partition []int32
	offset    []int64
}

func (c *ruleOutputCols) add(r row) {
	o := r.(*ruleOutputRow)
	c.thing = append(c.thing, o.thing)
	c.firedAt = append(c.firedAt, o.firedAt)
	c.rule = append(c.rule, o.rule)
	c.key = append(c.key, o.key)
	c.payload = append(c.payload, o.payload)
	m := o.metrics
	if m == nil {
		m = map[string]float64{}
	}
	c.metrics = append(c.metrics, m)
	c.src = append(c.src, o.src)
	c.partition = append(c.partition, o.partition)
	c.offset = append(c.offset, o.offset)
}

func (c *ruleOutputCols) len() int { return len(c.thing) }
func (c *ruleOutputCols) names() []string {
	return []string{"thing", "fired_at", "rule", "key", "payload", "metrics", "src", "partition", "offset"}
}
func (c *ruleOutputCols) values() []any {
	return []any{c.thing, c.firedAt, c.rule, c.key, c.payload, c.metrics, c.src, c.partition, c.offset}
}
func (c *ruleOutputCols) reset()              { *c = ruleOutputCols{} }
func (c *ruleOutputCols) sourceIDs() []string { return c.src }

// sourcedColumns are the columns of a derived table (see sourcedRow).
type sourcedColumns interface {
	columns
	// sourceIDs are the rows' source ids, in row order.
	sourceIDs() []string
}

// groupKey names one insert: the rows of one table from one source
// partition on one day (the table's partition), so that every insert
// writes exactly one part and is atomic.
type groupKey struct {
	table     string
	topic     string
	partition int32
	day       int64 // days since the Unix epoch of the row time
}

// group is the pending rows of one groupKey, with their offset range.
type group struct {
	key         groupKey
	first, last int64
	cols        columns
	gen         uint64 // the sink's partition generation when the group began
}

// token is the insert deduplication token of the group: a function of
// the table, the source topic and partition, the day and the rows'
// source ids (derived tables), or the first and last source offsets
// (the others, whose topics have no ids; an offset range holds the same
// records whatever gaps it has). The same rows always give the same
// token, so a retried insert is dropped by the server.
func (g *group) token() string {
	if sc, ok := g.cols.(sourcedColumns); ok {
		h := sha256.New()
		for _, id := range sc.sourceIDs() {
			h.Write([]byte(id))
			h.Write([]byte{0})
		}
		return fmt.Sprintf("iotpipe/%s/%s/%d/%d/src-%x", g.key.table, g.key.topic, g.key.partition, g.key.day, h.Sum(nil)[:16])
	}
	return fmt.Sprintf("iotpipe/%s/%s/%d/%d/%d-%d", g.key.table, g.key.topic, g.key.partition, g.key.day, g.first, g.last)
}

// insertQuery is the INSERT statement of the group's table.
func (g *group) insertQuery() string {
	return "INSERT INTO `" + g.key.table + "` (" + strings.Join(g.cols.names(), ", ") + ")"
}

func dayOf(t time.Time) int64 {
	s := t.Unix()
	if s < 0 {
		return (s - 86399) / 86400
	}
	return s / 86400
}
