package rules

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/iotpipe/iotpipe/schemas"
)

// BenchmarkTenRulesWithActions runs events through 10 rules that all
// match (each with a kafka action) in the processors.Harness (one Pebble
// batch committed per event, as the runtime's per-event unit). It reports
// events/s and action records/s.
func BenchmarkTenRulesWithActions(b *testing.B) {
	var src strings.Builder
	for i := range 10 {
		fmt.Fprintf(&src, "CREATE RULE r%d AS SELECT temp, hum, topic(2) AS dev FROM 'sensors/+/data' WHERE temp > %d THEN kafka(topic => 'out-%d', key => '${topic(2)}');\n", i, i, i)
	}
	g := newRig(b, src.String(), Options{})
	payload := []byte(`{"temp": 25.5, "hum": 40, "battery": 3.1, "ok": true}`)
	env := schemas.Envelope{Topic: "sensors/dev-1/data", ClientID: "dev-1"}
	ctx := context.Background()
	emitted := 0
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		recs, err := g.h.Publish(ctx, "dev-1", env, payload)
		if err != nil {
			b.Fatal(err)
		}
		emitted += len(recs)
	}
	b.StopTimer()
	if emitted != 10*b.N {
		b.Fatalf("%d records for %d events", emitted, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(emitted)/b.Elapsed().Seconds(), "actions/s")
}

// BenchmarkPewmaRule scores one point per event through a pewma() rule,
// state read and written in the harness's Pebble on every event.
func BenchmarkPewmaRule(b *testing.B) {
	g := newRig(b, `CREATE RULE p AS SELECT pewma(v) AS a FROM 'm/+' WHERE a.anomaly THEN kafka(topic => 'x')`, Options{})
	env := schemas.Envelope{Topic: "m/dev", ClientID: "dev"}
	ctx := context.Background()
	payloads := make([][]byte, 64)
	for i := range payloads {
		payloads[i] = fmt.Appendf(nil, `{"v": %d.5}`, 20+i%5)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := g.h.Publish(ctx, "dev", env, payloads[i%len(payloads)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
}

// BenchmarkWindowRule adds events to a per-device 1-minute window with
// three aggregates.
func BenchmarkWindowRule(b *testing.B) {
	g := newRig(b, `CREATE RULE w AS SELECT count(*) AS n, avg(v) AS mean, max(v) AS hi FROM 'm/+' GROUP BY TUMBLE(INTERVAL 1 MINUTE), topic(2)`, Options{})
	env := schemas.Envelope{Topic: "m/dev", ClientID: "dev"}
	ctx := context.Background()
	payload := []byte(`{"v": 21.5}`)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := g.h.Publish(ctx, "dev", env, payload); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDurationRuleNotHolding runs a FOR rule over events whose
// condition does not hold (the common case: the door is closed).
func BenchmarkDurationRuleNotHolding(b *testing.B) {
	g := newRig(b, `CREATE RULE d AS SELECT open FROM 'door/+' WHERE open = true FOR 10 MINUTES`, Options{})
	ctx := context.Background()
	payload := []byte(`{"open": false}`)
	things := make([]string, 1000)
	envs := make([]schemas.Envelope, len(things))
	for i := range things {
		things[i] = fmt.Sprintf("door-%d", i)
		envs[i] = schemas.Envelope{Topic: "door/" + things[i], ClientID: things[i]}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, err := g.h.Publish(ctx, things[i%len(things)], envs[i%len(things)], payload); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
