package clickhouse

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestPrometheusMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewPrometheusMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Inserted("telemetry", 100, 20*time.Millisecond)
	m.Inserted("telemetry", 50, 10*time.Millisecond)
	m.InsertFailed("presence")
	m.Skipped("telemetry", 7)
	m.DeadLettered()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, mt := range f.GetMetric() {
			switch {
			case mt.GetCounter() != nil:
				got[f.GetName()] += mt.GetCounter().GetValue()
			case mt.GetHistogram() != nil:
				got[f.GetName()] += float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	want := map[string]float64{
		"iotpipe_clickhouse_rows_inserted_total":   150,
		"iotpipe_clickhouse_insert_failures_total": 1,
		"iotpipe_clickhouse_rows_skipped_total":    7,
		"iotpipe_clickhouse_dead_lettered_total":   1,
		"iotpipe_clickhouse_insert_seconds":        2,
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s = %v, want %v", name, got[name], w)
		}
	}
	if _, err := NewPrometheusMetrics(reg); err == nil {
		t.Error("registering twice succeeded")
	}
}
