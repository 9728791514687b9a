package replay

import (
	"errors"
	"fmt"
	"os"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/schema"
	"github.com/segmentio/encoding/json"
)

// parquetRows is how many rows a row group of an export holds.
const parquetRows = 64 << 10

// Column kinds of an export.
const (
	colInt32 = iota
	colUint8
	colInt64
	colTime // Int64 ns, UTC
	colBool
	colString
	colBytes
)

// column is one column of an export and the values of the row group
// being filled (def holds definition levels of an optional column: 1
// present, 0 null; values only for present rows).
type column struct {
	name     string
	kind     int
	optional bool
	i32      []int32
	i64      []int64
	bools    []bool
	bytes    []parquet.ByteArray
	def      []int16
}

func (c *column) node() (schema.Node, error) {
	rep := parquet.Repetitions.Required
	if c.optional {
		rep = parquet.Repetitions.Optional
	}
	var lt schema.LogicalType = schema.NoLogicalType{}
	pt := parquet.Types.ByteArray
	switch c.kind {
	case colInt32:
		lt, pt = schema.NewIntLogicalType(32, true), parquet.Types.Int32
	case colUint8:
		lt, pt = schema.NewIntLogicalType(8, false), parquet.Types.Int32
	case colInt64:
		lt, pt = schema.NewIntLogicalType(64, true), parquet.Types.Int64
	case colTime:
		lt, pt = schema.NewTimestampLogicalType(true, schema.TimeUnitNanos), parquet.Types.Int64
	case colBool:
		pt = parquet.Types.Boolean
	case colString:
		lt = schema.StringLogicalType{}
	}
	return schema.NewPrimitiveNodeLogical(c.name, rep, lt, pt, -1, -1)
}

func (c *column) null() { c.def = append(c.def, 0) }

func (c *column) present() {
	if c.optional {
		c.def = append(c.def, 1)
	}
}

func (c *column) int32(v int32)  { c.present(); c.i32 = append(c.i32, v) }
func (c *column) int64(v int64)  { c.present(); c.i64 = append(c.i64, v) }
func (c *column) bool(v bool)    { c.present(); c.bools = append(c.bools, v) }
func (c *column) str(v string)   { c.present(); c.bytes = append(c.bytes, parquet.ByteArray(v)) }
func (c *column) bytea(v []byte) { c.present(); c.bytes = append(c.bytes, parquet.ByteArray(v)) }

// write writes the column's values to the row group's next column and
// empties it.
func (c *column) write(rg file.SerialRowGroupWriter) error {
	cw, err := rg.NextColumn()
	if err != nil {
		return err
	}
	def := c.def
	if !c.optional {
		def = nil
	}
	switch w := cw.(type) {
	case *file.Int32ColumnChunkWriter:
		_, err = w.WriteBatch(c.i32, def, nil)
	case *file.Int64ColumnChunkWriter:
		_, err = w.WriteBatch(c.i64, def, nil)
	case *file.BooleanColumnChunkWriter:
		_, err = w.WriteBatch(c.bools, def, nil)
	case *file.ByteArrayColumnChunkWriter:
		_, err = w.WriteBatch(c.bytes, def, nil)
	default:
		err = fmt.Errorf("column %s: unexpected writer %T", c.name, cw)
	}
	c.i32, c.i64, c.bools, c.bytes, c.def = c.i32[:0], c.i64[:0], c.bools[:0], c.bytes[:0], c.def[:0]
	return errors.Join(err, cw.Close())
}

// parquetFile writes rows to a Parquet file (zstd), a row group per
// parquetRows rows.
type parquetFile struct {
	path string
	f    *os.File
	w    *file.Writer
	cols []*column
	rows int
}

func createParquet(path string, cols []*column) (*parquetFile, error) {
	fields := make(schema.FieldList, len(cols))
	for i, c := range cols {
		n, err := c.node()
		if err != nil {
			return nil, fmt.Errorf("export schema: %w", err)
		}
		fields[i] = n
	}
	root, err := schema.NewGroupNode("schema", parquet.Repetitions.Required, fields, -1)
	if err != nil {
		return nil, fmt.Errorf("export schema: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Zstd), parquet.WithCreatedBy("iotpipe"))
	w, err := file.NewParquetWriterWithError(f, root, file.WithWriterProps(props))
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("export %s: %w", path, err)
	}
	return &parquetFile{path: path, f: f, w: w, cols: cols}, nil
}

// row counts a row whose values were added, writing a row group when
// it is full.
func (p *parquetFile) row() error {
	if p.rows++; p.rows >= parquetRows {
		return p.flush()
	}
	return nil
}

func (p *parquetFile) flush() error {
	if p.rows == 0 {
		return nil
	}
	p.rows = 0
	rg, err := p.w.AppendRowGroupChecked()
	if err != nil {
		return fmt.Errorf("export %s: %w", p.path, err)
	}
	for _, c := range p.cols {
		if err := c.write(rg); err != nil {
			return fmt.Errorf("export %s: %w", p.path, err)
		}
	}
	if err := rg.Close(); err != nil {
		return fmt.Errorf("export %s: %w", p.path, err)
	}
	return nil
}

// Close writes what is held and the file's footer.
func (p *parquetFile) Close() error {
	err := p.flush()
	if cerr := p.w.Close(); cerr != nil { // closes the file too
		err = errors.Join(err, fmt.Errorf("export %s: %w", p.path, cerr))
	}
	return err
}

// EventsParquet writes events to a Parquet file (iotpipe events
// --export): partition, offset, received_at (ns, UTC), type, thing,
// topic, client_id, principal, qos, retain, payload (the text, null
// when it is not UTF-8) and payload_bytes (exact).
type EventsParquet struct {
	p *parquetFile
	c struct {
		partition, offset, at, typ, thing, topic, client, principal, qos, retain, payload, raw column
	}
}

// CreateEventsParquet creates (or truncates) path.
func CreateEventsParquet(path string) (*EventsParquet, error) {
	w := &EventsParquet{}
	c := &w.c
	c.partition, c.offset, c.at = column{name: "partition", kind: colInt32}, column{name: "offset", kind: colInt64}, column{name: "received_at", kind: colTime}
	c.typ, c.thing, c.topic = column{name: "type", kind: colString}, column{name: "thing", kind: colString}, column{name: "topic", kind: colString}
	c.client, c.principal = column{name: "client_id", kind: colString}, column{name: "principal", kind: colString}
	c.qos, c.retain = column{name: "qos", kind: colUint8}, column{name: "retain", kind: colBool}
	c.payload, c.raw = column{name: "payload", kind: colString, optional: true}, column{name: "payload_bytes", kind: colBytes}
	var err error
	w.p, err = createParquet(path, []*column{&c.partition, &c.offset, &c.at, &c.typ, &c.thing, &c.topic, &c.client, &c.principal, &c.qos, &c.retain, &c.payload, &c.raw})
	return w, err
}

// Write adds one event.
func (w *EventsParquet) Write(ev *Event) error {
	c, env := &w.c, &ev.Envelope
	c.partition.int32(ev.Partition)
	c.offset.int64(ev.Offset)
	c.at.int64(ev.Time().UnixNano())
	c.typ.str(string(env.Type))
	c.thing.str(ev.Thing)
	c.topic.str(env.Topic)
	c.client.str(env.ClientID)
	c.principal.str(env.Principal)
	c.qos.int32(int32(env.QoS))
	c.retain.bool(env.Retain)
	if utf8.Valid(ev.Payload) {
		c.payload.bytea(ev.Payload)
	} else {
		c.payload.null()
	}
	c.raw.bytea(ev.Payload)
	return w.p.row()
}

// Close finishes the file.
func (w *EventsParquet) Close() error { return w.p.Close() }

// OutputsParquet writes replay outputs to a Parquet file (iotpipe
// replay --export): rule, source, at (ns, UTC), partition and offset of
// the event (null for a tick's output), thing, output
// and actions (JSON text), resolved.
type OutputsParquet struct {
	p *parquetFile
	c struct {
		rule, source, at, partition, offset, thing, output, actions, resolved column
	}
}

// CreateOutputsParquet creates (or truncates) path.
func CreateOutputsParquet(path string) (*OutputsParquet, error) {
	w := &OutputsParquet{}
	c := &w.c
	c.rule, c.source, c.at = column{name: "rule", kind: colString}, column{name: "source", kind: colString}, column{name: "at", kind: colTime}
	c.partition = column{name: "partition", kind: colInt32, optional: true}
	c.offset = column{name: "offset", kind: colInt64, optional: true}
	c.thing, c.output = column{name: "thing", kind: colString}, column{name: "output", kind: colString}
	c.actions, c.resolved = column{name: "actions", kind: colString, optional: true}, column{name: "resolved", kind: colBool}
	var err error
	w.p, err = createParquet(path, []*column{&c.rule, &c.source, &c.at, &c.partition, &c.offset, &c.thing, &c.output, &c.actions, &c.resolved})
	return w, err
}

// Write adds one output.
func (w *OutputsParquet) Write(o Output) error {
	var line struct {
		Output   json.RawMessage `json:"output"`
		Actions  json.RawMessage `json:"actions"`
		Resolved bool            `json:"resolved"`
	}
	if err := json.Unmarshal(o.Line, &line); err != nil {
		return fmt.Errorf("export output of rule %s: %w", o.Rule, err)
	}
	c := &w.c
	c.rule.str(o.Rule)
	c.source.str(o.Source)
	c.at.int64(o.At.UnixNano())
	if o.Event != nil {
		c.partition.int32(o.Event.Partition)
		c.offset.int64(o.Event.Offset)
	} else {
		c.partition.null()
		c.offset.null()
	}
	c.thing.str(o.Thing)
	c.output.bytea(line.Output)
	if len(line.Actions) > 0 {
		c.actions.bytea(line.Actions)
	} else {
		c.actions.null()
	}
	c.resolved.bool(line.Resolved)
	return w.p.row()
}

// Close finishes the file.
func (w *OutputsParquet) Close() error { return w.p.Close() }
