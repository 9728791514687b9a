package clickhouse

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Column describes one result column.
type Column struct {
	// Name is the column name.
	Name string `json:"name"`
	// Type is the ClickHouse type, e.g. "DateTime64(3, 'UTC')".
	Type string `json:"type"`
}

// Result is a query's answer held in memory.
type Result struct {
	// Columns describe the row values, in order.
	Columns []Column `json:"columns"`
	// Rows are the values, converted with Value.
	Rows [][]any `json:"rows"`
	// Truncated reports that more rows existed than the limit allowed.
	Truncated bool `json:"truncated"`
}

// Query runs query and returns at most maxRows rows (0: all). Values are
// converted to JSON-friendly forms by Value.
func Query(ctx context.Context, conn driver.Conn, query string, maxRows int) (*Result, error) {
	rows, err := conn.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	res := &Result{Columns: make([]Column, len(types)), Rows: [][]any{}}
	dest := make([]any, len(types))
	for i, ct := range types {
		res.Columns[i] = Column{Name: ct.Name(), Type: ct.DatabaseTypeName()}
		dest[i] = reflect.New(ct.ScanType()).Interface()
	}
	for rows.Next() {
		if maxRows > 0 && len(res.Rows) == maxRows {
			res.Truncated = true
			break
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("read row %d: %w", len(res.Rows)+1, err)
		}
		row := make([]any, len(dest))
		for i, d := range dest {
			row[i] = Value(reflect.ValueOf(d).Elem().Interface())
		}
		res.Rows = append(res.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return res, nil
}

// Value converts a scanned value into one that encodes well as JSON and
// prints well as text: nil pointers become nil, times RFC 3339 strings in
// UTC, big numbers and non-finite floats strings; other values are kept.
func Value(v any) any {
	rv := reflect.ValueOf(v)
	for rv.IsValid() && rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil
		}
		rv = rv.Elem()
		v = rv.Interface()
	}
	switch t := v.(type) {
	case nil:
		return nil
	case time.Time:
		return t.UTC().Format("2006-01-02T15:04:05.999999999Z07:00")
	case big.Int:
		return t.String()
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return strconv.FormatFloat(t, 'g', -1, 64)
		}
	case float32:
		if math.IsNaN(float64(t)) || math.IsInf(float64(t), 0) {
			return strconv.FormatFloat(float64(t), 'g', -1, 32)
		}
	case []byte:
		return string(t)
	case fmt.Stringer:
		if rv.Kind() == reflect.Struct {
			return t.String()
		}
	}
	return v
}

// text renders a converted value for the table and CSV formats.
func text(v any) string {
	switch t := v.(type) {
	case nil:
		return "NULL"
	case string:
		return t
	case map[string]any, []any:
	default:
		rv := reflect.ValueOf(v)
		if k := rv.Kind(); k != reflect.Map && k != reflect.Slice && k != reflect.Array && k != reflect.Struct {
			return fmt.Sprint(v)
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// WriteTable writes r as aligned text columns with a header.
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	names := make([]string, len(r.Columns))
	for i, c := range r.Columns {
		names[i] = c.Name
	}
	fmt.Fprintln(tw, strings.Join(names, "\t"))
	cells := make([]string, len(r.Columns))
	for _, row := range r.Rows {
		for i, v := range row {
			cells[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(text(v))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return r.footer(w)
}

func (r *Result) footer(w io.Writer) error {
	var err error
	if r.Truncated {
		_, err = fmt.Fprintf(w, "(%d rows shown; more were cut off by the row limit)\n", len(r.Rows))
	} else {
		_, err = fmt.Fprintf(w, "(%d rows)\n", len(r.Rows))
	}
	return err
}

// WriteCSV writes r as CSV with a header line.
func (r *Result) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	rec := make([]string, len(r.Columns))
	for i, c := range r.Columns {
		rec[i] = c.Name
	}
	if err := cw.Write(rec); err != nil {
		return err
	}
	for _, row := range r.Rows {
		for i, v := range row {
			rec[i] = text(v)
			if v == nil {
				rec[i] = ""
			}
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes r as a JSON array with one object per row.
func (r *Result) WriteJSON(w io.Writer) error {
	if _, err := io.WriteString(w, "["); err != nil {
		return err
	}
	for n, row := range r.Rows {
		var b strings.Builder
		if n > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n  {")
		for i, v := range row {
			if i > 0 {
				b.WriteString(", ")
			}
			k, _ := json.Marshal(r.Columns[i].Name)
			val, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("encode %s: %w", r.Columns[i].Name, err)
			}
			b.Write(k)
			b.WriteString(": ")
			b.Write(val)
		}
		b.WriteString("}")
		if _, err := io.WriteString(w, b.String()); err != nil {
			return err
		}
	}
	end := "]\n"
	if len(r.Rows) > 0 {
		end = "\n]\n"
	}
	_, err := io.WriteString(w, end)
	return err
}
