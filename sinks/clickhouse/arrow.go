package clickhouse

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

var (
	arrowTime = &arrow.TimestampType{Unit: arrow.Millisecond, TimeZone: "UTC"}
	arrowMap  = arrow.MapOf(arrow.BinaryTypes.String, arrow.PrimitiveTypes.Float64)
)

// encodeArrow writes columns of one table as one Arrow IPC stream, a
// record batch per columns, the body of an INSERT ... FORMAT
// ArrowStream (the server squashes the batches into one block). Column
// types map as: string → utf8, uint8/uint64/int32/int64/float64 → the
// same, bool → boolean, time.Time → timestamp[ms, UTC],
// map[string]float64 → map<utf8, float64>.
func encodeArrow(dst *bytes.Buffer, cols ...columns) error {
	var w *ipc.Writer
	for _, c := range cols {
		rec, err := arrowRecord(c)
		if err != nil {
			return err
		}
		if w == nil {
			w = ipc.NewWriter(dst, ipc.WithSchema(rec.Schema()), ipc.WithAllocator(memory.DefaultAllocator))
		}
		err = w.Write(rec)
		rec.Release()
		if err != nil {
			return fmt.Errorf("arrow: write: %w", err)
		}
	}
	if w == nil {
		return errors.New("arrow: no columns to write")
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("arrow: close: %w", err)
	}
	return nil
}

// arrowRecord returns cols as one Arrow record batch.
func arrowRecord(cols columns) (arrow.RecordBatch, error) {
	if t, ok := cols.(*telemetryCols); ok {
		return t.arrowRecord(), nil
	}
	names, values := cols.names(), cols.values()
	fields := make([]arrow.Field, len(names))
	for i, v := range values {
		var t arrow.DataType
		switch v.(type) {
		case []string:
			t = arrow.BinaryTypes.String
		case []uint8:
			t = arrow.PrimitiveTypes.Uint8
		case []uint64:
			t = arrow.PrimitiveTypes.Uint64
		case []int32:
			t = arrow.PrimitiveTypes.Int32
		case []int64:
			t = arrow.PrimitiveTypes.Int64
		case []float64:
			t = arrow.PrimitiveTypes.Float64
		case []bool:
			t = arrow.FixedWidthTypes.Boolean
		case []time.Time:
			t = arrowTime
		case []map[string]float64:
			t = arrowMap
		default:
			return nil, fmt.Errorf("arrow: column %s: unsupported %T", names[i], v)
		}
		fields[i] = arrow.Field{Name: strings.Trim(names[i], "`"), Type: t}
	}
	mem := memory.DefaultAllocator
	schema := arrow.NewSchema(fields, nil)
	rb := array.NewRecordBuilder(mem, schema)
	defer rb.Release()
	for i, v := range values {
		switch col := v.(type) {
		case []string:
			rb.Field(i).(*array.StringBuilder).AppendValues(col, nil)
		case []uint8:
			rb.Field(i).(*array.Uint8Builder).AppendValues(col, nil)
		case []uint64:
			rb.Field(i).(*array.Uint64Builder).AppendValues(col, nil)
		case []int32:
			rb.Field(i).(*array.Int32Builder).AppendValues(col, nil)
		case []int64:
			rb.Field(i).(*array.Int64Builder).AppendValues(col, nil)
		case []float64:
			rb.Field(i).(*array.Float64Builder).AppendValues(col, nil)
		case []bool:
			rb.Field(i).(*array.BooleanBuilder).AppendValues(col, nil)
		case []time.Time:
			b := rb.Field(i).(*array.TimestampBuilder)
			b.Reserve(len(col))
			for _, t := range col {
				b.UnsafeAppend(arrow.Timestamp(t.UnixMilli()))
			}
		case []map[string]float64:
			b := rb.Field(i).(*array.MapBuilder)
			kb, vb := b.KeyBuilder().(*array.StringBuilder), b.ItemBuilder().(*array.Float64Builder)
			for _, m := range col {
				b.Append(true)
				for k, x := range m {
					kb.Append(k)
					vb.Append(x)
				}
			}
		}
	}
	return rb.NewRecordBatch(), nil
}

// arrowRecord is arrowRecord for telemetry: the record's arrays are
// made over the columns' own buffers, so nothing is copied before the
// IPC writer (the record is valid until c changes).
func (c *telemetryCols) arrowRecord() arrow.RecordBatch {
	n := c.len()
	c.msBuf = c.msBuf[:0]
	for _, t := range c.receivedAt {
		c.msBuf = append(c.msBuf, t.UnixMilli())
	}
	for _, t := range c.eventTime {
		c.msBuf = append(c.msBuf, t.UnixMilli())
	}
	c.bits = append(c.bits[:0], make([]byte, (n+7)/8)...)
	for i, b := range c.retain {
		if b {
			c.bits[i/8] |= 1 << (i % 8)
		}
	}
	ms := arrow.Int64Traits.CastToBytes(c.msBuf)
	entries := array.NewData(arrowMap.Elem(), len(c.metricVals), []*memory.Buffer{nil}, []arrow.ArrayData{
		stringData(&c.metricNames, len(c.metricVals)),
		fixedData(arrow.PrimitiveTypes.Float64, len(c.metricVals), arrow.Float64Traits.CastToBytes(c.metricVals)),
	}, 0, 0)
	data := []arrow.ArrayData{
		stringData(&c.thing, n), stringData(&c.topic, n), stringData(&c.clientID, n), stringData(&c.principal, n),
		fixedData(arrow.PrimitiveTypes.Uint8, n, c.qos),
		fixedData(arrow.FixedWidthTypes.Boolean, n, c.bits),
		fixedData(arrowTime, n, ms[:8*n]),
		fixedData(arrowTime, n, ms[8*n:]),
		stringData(&c.payload, n),
		array.NewData(arrowMap, n, []*memory.Buffer{nil, memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(offsets(c.metricOffsets)))}, []arrow.ArrayData{entries}, 0, 0),
		fixedData(arrow.PrimitiveTypes.Int32, n, arrow.Int32Traits.CastToBytes(c.partition)),
		fixedData(arrow.PrimitiveTypes.Int64, n, arrow.Int64Traits.CastToBytes(c.offset)),
	}
	entries.Release()
	names := c.names()
	fields := make([]arrow.Field, len(names))
	arrays := make([]arrow.Array, len(names))
	for i, d := range data {
		arrays[i] = array.MakeFromData(d)
		d.Release()
		fields[i] = arrow.Field{Name: names[i], Type: arrays[i].DataType()}
	}
	schema := arrow.NewSchema(fields, nil)
	rec := array.NewRecordBatch(schema, arrays, int64(n))
	for _, a := range arrays {
		a.Release()
	}
	return rec
}

// arrowSize is about the size of c's Arrow stream: its buffers plus
// room for the schema and padding.
func (c *telemetryCols) arrowSize() int {
	n := 16 << 10
	for _, s := range []*strCol{&c.thing, &c.topic, &c.clientID, &c.principal, &c.payload, &c.metricNames} {
		n += len(s.data) + 4*len(s.offsets)
	}
	rows := c.len()
	return n + rows*(1+1+8+8+4+4+8) + 8*len(c.metricVals)
}

// offsets is an offsets column, [0] when empty.
func offsets(o []int32) []int32 {
	if len(o) == 0 {
		return []int32{0}
	}
	return o
}

func stringData(c *strCol, n int) arrow.ArrayData {
	return array.NewData(arrow.BinaryTypes.String, n, []*memory.Buffer{nil,
		memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(offsets(c.offsets))), memory.NewBufferBytes(c.data)}, nil, 0, 0)
}

func fixedData(t arrow.DataType, n int, b []byte) arrow.ArrayData {
	return array.NewData(t, n, []*memory.Buffer{nil, memory.NewBufferBytes(b)}, nil, 0, 0)
}
