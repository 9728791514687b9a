package clickhouse

import (
	"bytes"
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

// encodeArrow writes a group's columns as one Arrow IPC stream (one
// record batch), the body of an INSERT ... FORMAT ArrowStream. Column
// types map as: string → utf8, uint8/uint64/int32/int64/float64 → the
// same, bool → boolean, time.Time → timestamp[ms, UTC],
// map[string]float64 → map<utf8, float64>.
func encodeArrow(dst *bytes.Buffer, cols columns) error {
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
			return fmt.Errorf("arrow: column %s: unsupported %T", names[i], v)
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
	rec := rb.NewRecordBatch()
	defer rec.Release()
	w := ipc.NewWriter(dst, ipc.WithSchema(schema), ipc.WithAllocator(mem))
	if err := w.Write(rec); err != nil {
		return fmt.Errorf("arrow: write: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("arrow: close: %w", err)
	}
	return nil
}
