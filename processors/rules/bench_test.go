package rules

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

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

// typicalRules is the "10 typical rules": 2 filters with
// actions, 2 pewma, a tumbling window, a FOR timer, 4 rarely-matching
// filters and transforms.
const typicalRules = `
CREATE RULE hot AS SELECT temp, topic(2) AS dev FROM 'sensors/+/data' WHERE temp > 30 THEN kafka(topic => 'hot');
CREATE RULE low_battery AS SELECT battery, topic(2) AS dev FROM 'sensors/+/data' WHERE battery < 3.0 THEN republish(topic => 'alerts/${topic(2)}', qos => 1);
CREATE RULE temp_score AS SELECT topic(2) AS dev, pewma(temp) AS a FROM 'sensors/+/data' WHERE a.anomaly THEN kafka(topic => 'anomalies');
CREATE RULE hum_score AS SELECT topic(2) AS dev, pewma(hum) AS a FROM 'sensors/+/data' WHERE a.anomaly THEN kafka(topic => 'anomalies');
CREATE RULE per_minute AS SELECT topic(2) AS dev, count(*) AS n, avg(temp) AS mean, max(temp) AS hi FROM 'sensors/+/data' GROUP BY TUMBLE(INTERVAL 1 MINUTE), topic(2);
CREATE RULE stuck_hot AS SELECT topic(2) AS dev FROM 'sensors/+/data' WHERE temp > 45 FOR 5 MINUTES THEN kafka(topic => 'stuck');
CREATE RULE door AS SELECT * FROM 'doors/+/state' WHERE open = true THEN kafka(topic => 'doors');
CREATE RULE fw AS SELECT upper(version) AS v FROM 'sensors/+/firmware' THEN kafka(topic => 'fw');
CREATE RULE freezing AS SELECT temp FROM 'sensors/+/data' WHERE temp < -40 THEN kafka(topic => 'cold');
CREATE RULE shape AS SELECT concat(topic(2), '/', cast(hum AS String)) AS k FROM 'sensors/+/data' WHERE hum > 99 THEN kafka(topic => 'shape');
`

// BenchmarkTypicalRulesBatched runs typical device traffic (1,000
// things) through the 10 typical rules in batches of 1,000 events, one
// Pebble commit per batch, as the runtime runs a poll. It is the rules'
// share of the end-to-end cost the issue measures. Every thing's state
// is written once per batch.
func BenchmarkTypicalRulesBatched(b *testing.B) { benchTypicalRules(b, 1000) }

// BenchmarkTypicalRulesBatched100Things is the same traffic from 100
// things (the 100 publishers), so a batch writes each thing's
// state 10 times: the state store and the changelog get it once.
func BenchmarkTypicalRulesBatched100Things(b *testing.B) { benchTypicalRules(b, 100) }

func benchTypicalRules(b *testing.B, things int) {
	g := newRig(b, typicalRules, Options{})
	g.h.DropChangelog = true
	const batch = 1000
	recs := make([]*kgo.Record, 0, batch)
	env := schemas.Envelope{Type: schemas.EventPublish, QoS: 1}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for i := 0; i < b.N; {
		recs = recs[:0]
		for ; len(recs) < batch && i < b.N; i++ {
			thing := fmt.Sprintf("dev-%d", i%things)
			env.Topic, env.ClientID = "sensors/"+thing+"/data", thing
			env.ReceivedAt = g.h.Now.Add(time.Duration(i) * time.Millisecond).UnixNano()
			v := fmt.Appendf(nil, `{"temp": %d.5, "hum": %d, "battery": 3.%d, "ok": true}`, 20+i%7, 40+i%11, i%9)
			recs = append(recs, &kgo.Record{Key: []byte(thing), Value: v, Headers: env.Headers(), Offset: int64(i)})
		}
		if _, err := g.h.Records(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.N)/(cpuTime()-cpu).Seconds(), "events/cpu-s")
}

// cpuTime returns the CPU time this process has used (user and system):
// on a shared machine events per CPU-second is the steadier rate (GC on
// another core counts).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
