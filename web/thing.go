package web

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Bounds of a thing's views.
const (
	maxNameLen    = 256
	recentEvents  = 20
	maxFields     = 32
	maxPoints     = 5000
	maxAnomalies  = 1000
	defaultWindow = 60       // minutes
	maxWindow     = 7 * 1440 // minutes
)

// ThingView is GET /api/dashboard/things/{thing}.
type ThingView struct {
	Thing Thing `json:"thing"`
	// Known is false when the index has not seen the thing.
	Known bool `json:"known"`
	// Fields are the numeric fields it published in the last hour.
	Fields []string `json:"fields"`
	// Shadows are its shadows' names ("" is the classic shadow).
	Shadows  []string     `json:"shadows"`
	Commands []CommandRef `json:"commands"`
	// Recent are its newest events (publishes and connections), newest
	// first.
	Recent []RecentEvent `json:"recent"`
	// Errors says what could not be read (ClickHouse down, say).
	Errors []string `json:"errors,omitempty"`
}

// RecentEvent is one of a thing's newest events, as ClickHouse's
// telemetry and presence tables hold them.
type RecentEvent struct {
	Received int64  `json:"received"` // Unix ms
	Type     string `json:"type"`
	Topic    string `json:"topic,omitempty"`
	Payload  string `json:"payload,omitempty"`
}

func (d *Dashboard) serveThing(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("thing")
	if name == "" || len(name) > maxNameLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("thing: want 1 to %d bytes", maxNameLen))
		return
	}
	v := ThingView{Fields: []string{}, Shadows: []string{""}, Commands: d.commands.of(name), Recent: []RecentEvent{}}
	v.Thing, v.Known = d.fleet.thing(name, time.Now().UnixMilli())
	if !v.Known {
		v.Thing.Name = name
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	t := sqlString(name)
	since := fmt.Sprintf("fromUnixTimestamp64Milli(%d)", time.Now().Add(-time.Hour).UnixMilli())
	reads := []struct {
		what, sql string
		fn        func([]any)
	}{
		{"fields", fmt.Sprintf("SELECT DISTINCT arrayJoin(mapKeys(metrics)) AS k FROM telemetry WHERE thing = %s AND received_at > %s ORDER BY k LIMIT %d", t, since, maxFields),
			func(r []any) { v.Fields = append(v.Fields, cellString(r[0])) }},
		{"shadows", fmt.Sprintf("SELECT shadow FROM shadows_current WHERE thing = %s AND shadow != '' ORDER BY shadow LIMIT 100", t),
			func(r []any) { v.Shadows = append(v.Shadows, cellString(r[0])) }},
		{"recent events", fmt.Sprintf(`SELECT * FROM (
(SELECT toUnixTimestamp64Milli(received_at) AS at, 'publish' AS type, topic, substring(payload, 1, %d) AS payload FROM telemetry WHERE thing = %s ORDER BY received_at DESC LIMIT %d)
UNION ALL
(SELECT toUnixTimestamp64Milli(received_at) AS at, toString(event) AS type, '' AS topic, '' AS payload FROM presence WHERE thing = %s ORDER BY received_at DESC LIMIT %d)
) ORDER BY at DESC LIMIT %d`, maxShown, t, recentEvents, t, recentEvents, recentEvents),
			func(r []any) {
				v.Recent = append(v.Recent, RecentEvent{Received: cellInt(r[0]), Type: cellString(r[1]), Topic: cellString(r[2]), Payload: cellString(r[3])})
			}},
	}
	for _, q := range reads {
		rows, err := d.query.Query(ctx, q.sql)
		if err != nil {
			v.Errors = append(v.Errors, fmt.Sprintf("%s: %v", q.what, err))
			continue
		}
		for _, r := range rows.Rows {
			q.fn(r)
		}
	}
	writeJSON(w, http.StatusOK, v)
}

// Series is GET /api/dashboard/things/{thing}/series: one numeric
// field's points from telemetry, the PEWMA prediction from the outputs
// of a rule that stores pewma(field) with clickhouse() (its mean and
// band), and the anomalies rules flagged on the field.
type Series struct {
	Field string `json:"field"`
	// Points are [time ms, value].
	Points [][2]float64 `json:"points"`
	// Band are [time ms, mean, lower, upper].
	Band [][4]float64 `json:"band"`
	// Anomalies are [time ms, value, score].
	Anomalies [][3]float64 `json:"anomalies"`
	Truncated bool         `json:"truncated,omitempty"`
}

func (d *Dashboard) serveSeries(w http.ResponseWriter, r *http.Request) {
	name, field := r.PathValue("thing"), r.URL.Query().Get("field")
	if name == "" || len(name) > maxNameLen || field == "" || len(field) > maxNameLen {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("thing and field: want 1 to %d bytes each", maxNameLen))
		return
	}
	minutes, err := intParam(r.URL.Query(), "minutes", defaultWindow, 1, maxWindow)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	s, err := d.series(ctx, name, field, time.Now().Add(-time.Duration(minutes)*time.Minute))
	if err != nil {
		queryError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

// series reads the field's chart since from ClickHouse.
func (d *Dashboard) series(ctx context.Context, thing, field string, since time.Time) (*Series, error) {
	t, f := sqlString(thing), sqlString(field)
	from := fmt.Sprintf("fromUnixTimestamp64Milli(%d)", since.UnixMilli())
	s := &Series{Field: field, Points: [][2]float64{}, Band: [][4]float64{}, Anomalies: [][3]float64{}}
	rows, err := d.query.Query(ctx, fmt.Sprintf(`SELECT toUnixTimestamp64Milli(received_at), metrics[%s] FROM telemetry
WHERE thing = %s AND received_at > %s AND mapContains(metrics, %s) ORDER BY received_at DESC LIMIT %d`, f, t, from, f, maxPoints))
	if err != nil {
		return nil, fmt.Errorf("points of %s: %w", field, err)
	}
	s.Truncated = len(rows.Rows) == maxPoints
	for i := len(rows.Rows) - 1; i >= 0; i-- {
		r := rows.Rows[i]
		if v, ok := cellFloat(r[1]); ok {
			s.Points = append(s.Points, [2]float64{float64(cellInt(r[0])), v})
		}
	}
	// The band: rule outputs that carry the field and a pewma() result
	// (flattened as <alias>.mean, .lower, .upper).
	rows, err = d.query.Query(ctx, fmt.Sprintf(`SELECT t, metrics[mk], metrics[concat(p, '.lower')], metrics[concat(p, '.upper')] FROM (
SELECT toUnixTimestamp64Milli(fired_at) AS t, metrics, arrayFirst(k -> endsWith(k, '.mean') AND mapContains(metrics, concat(substring(k, 1, length(k) - 5), '.upper')), mapKeys(metrics)) AS mk,
substring(mk, 1, length(mk) - 5) AS p
FROM rule_outputs WHERE thing = %s AND fired_at > %s AND mapContains(metrics, %s) ORDER BY fired_at DESC LIMIT %d) WHERE mk != '' ORDER BY t`, t, from, f, maxPoints))
	if err != nil {
		return nil, fmt.Errorf("PEWMA band of %s: %w", field, err)
	}
	for _, r := range rows.Rows {
		m, ok1 := cellFloat(r[1])
		lo, ok2 := cellFloat(r[2])
		hi, ok3 := cellFloat(r[3])
		if ok1 && ok2 && ok3 {
			s.Band = append(s.Band, [4]float64{float64(cellInt(r[0])), m, lo, hi})
		}
	}
	rows, err = d.query.Query(ctx, fmt.Sprintf(`SELECT toUnixTimestamp64Milli(detected_at), value, score FROM anomalies
WHERE thing = %s AND detected_at > %s AND JSONHas(payload, 'output', %s) ORDER BY detected_at LIMIT %d`, t, from, f, maxAnomalies))
	if err != nil {
		return nil, fmt.Errorf("anomalies of %s: %w", field, err)
	}
	for _, r := range rows.Rows {
		v, _ := cellFloat(r[1])
		sc, _ := cellFloat(r[2])
		s.Anomalies = append(s.Anomalies, [3]float64{float64(cellInt(r[0])), v, sc})
	}
	return s, nil
}
