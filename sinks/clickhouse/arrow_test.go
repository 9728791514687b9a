package clickhouse

import (
	"bytes"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
)

// TestTelemetryArrow checks the telemetry Arrow stream, made over the
// columns' own buffers, against the values the native insert sends.
func TestTelemetryArrow(t *testing.T) {
	d := decoder{topics: schemas.DefaultTopics(), maxPayload: 1 << 20}
	rx := time.Date(2026, 11, 22, 10, 0, 0, 123456789, time.UTC)
	var sc scratch
	cols := newColumns("telemetry").(*telemetryCols)
	for i, value := range []string{
		`{"temp":4.5,"pos":{"x":1,"y":[2,3]},"ok":true,"timestamp":1763805600}`,
		`not json`,
		`{}`,
		`{"é":1,"a.b":2,"a":{"b":3}}`,
		`7`,
	} {
		env := schemas.Envelope{Type: schemas.EventPublish, Topic: "dt/f/telemetry", ClientID: "f", Principal: "p", QoS: uint8(i % 3), Retain: i%2 == 1, ReceivedAt: rx.Add(time.Duration(i) * time.Second).UnixNano()}
		var v telemetryView
		r := &kgo.Record{Topic: "iotpipe.events", Key: []byte("thing"), Value: []byte(value), Headers: env.Headers(), Partition: 1, Offset: int64(i)}
		rw, err := d.decodeInto(r, &sc, &v)
		if err != nil {
			t.Fatal(err)
		}
		cols.add(rw)
	}
	cols.add(&telemetryRow{thing: "row", payload: "x", receivedAt: rx, eventTime: rx, metrics: map[string]float64{"m": 1}, offset: 9})

	var buf bytes.Buffer
	if err := encodeArrow(&buf, cols); err != nil {
		t.Fatal(err)
	}
	rd, err := ipc.NewReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Release()
	if !rd.Next() {
		t.Fatalf("no record: %v", rd.Err())
	}
	rec := rd.RecordBatch()
	if int(rec.NumRows()) != cols.len() {
		t.Fatalf("%d rows, want %d", rec.NumRows(), cols.len())
	}
	names, want := cols.names(), cols.values()
	for i := range names {
		if got := rec.Schema().Field(i).Name; got != names[i] {
			t.Fatalf("field %d is %s, want %s", i, got, names[i])
		}
		w := want[i]
		if ts, ok := w.([]time.Time); ok { // DateTime64(3) keeps milliseconds
			for j := range ts {
				ts[j] = time.UnixMilli(ts[j].UnixMilli()).UTC()
			}
		}
		if diff := cmp.Diff(w, arrowValues(t, rec.Column(i))); diff != "" {
			t.Errorf("column %s (-native +arrow):\n%s", names[i], diff)
		}
	}
	if rd.Next() {
		t.Fatal("more than one record batch")
	}
}

// arrowValues converts a column back to the Go slice the native insert
// uses for it.
func arrowValues(t *testing.T, a arrow.Array) any {
	t.Helper()
	n := a.Len()
	switch c := a.(type) {
	case *array.String:
		out := make([]string, n)
		for i := range out {
			out[i] = c.Value(i)
		}
		return out
	case *array.Uint8:
		return append([]uint8{}, c.Uint8Values()...)
	case *array.Int32:
		return append([]int32{}, c.Int32Values()...)
	case *array.Int64:
		return append([]int64{}, c.Int64Values()...)
	case *array.Boolean:
		out := make([]bool, n)
		for i := range out {
			out[i] = c.Value(i)
		}
		return out
	case *array.Timestamp:
		out := make([]time.Time, n)
		for i := range out {
			out[i] = time.UnixMilli(int64(c.Value(i))).UTC()
		}
		return out
	case *array.Map:
		keys, items := c.Keys().(*array.String), c.Items().(*array.Float64)
		out := make([]map[string]float64, n)
		for i := range out {
			lo, hi := c.ValueOffsets(i)
			m := map[string]float64{}
			for j := lo; j < hi; j++ {
				m[keys.Value(int(j))] = items.Value(int(j))
			}
			out[i] = m
		}
		return out
	}
	t.Fatalf("unexpected column type %T", a)
	return nil
}
