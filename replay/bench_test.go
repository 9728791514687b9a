package replay

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/schemas"
)

// benchRules is the 10-rule set of the replay benchmark: plain filters,
// actions, a pewma anomaly rule, a window and a FOR rule, over one topic
// tree.
const benchRules = `CREATE RULE r1 AS SELECT temp FROM 'fleet/+/telemetry' WHERE temp > 90;
CREATE RULE r2 AS SELECT temp, hum FROM 'fleet/+/telemetry' WHERE hum < 5 AND temp > 50;
CREATE RULE r3 AS SELECT * FROM 'fleet/+/telemetry' WHERE status = 'fault' THEN webhook(url => 'https://h/${topic(2)}');
CREATE RULE r4 AS SELECT topic(2) AS dev, temp FROM 'fleet/+/telemetry' WHERE temp >= 99 AND temp <= 100;
CREATE RULE r5 AS SELECT temp, pewma(temp) AS p FROM 'fleet/+/telemetry' WHERE p.anomaly;
CREATE RULE r6 AS SELECT count(*) AS n, avg(temp) AS mean FROM 'fleet/+/telemetry' GROUP BY TUMBLE(1 MINUTE), topic(2);
CREATE RULE r7 AS SELECT temp FROM 'fleet/+/telemetry' WHERE temp > 95 FOR 30 SECONDS;
CREATE RULE r8 AS SELECT upper(status) AS s FROM 'fleet/+/telemetry' WHERE startswith(status, 'err');
CREATE RULE r9 AS SELECT hum FROM 'fleet/+/hum' WHERE hum > 99;
CREATE RULE r10 AS SELECT temp FROM 'other/#' WHERE temp > 0`

// benchEvents returns n events of things devices, 1 ms apart, in the
// order Read would pass them.
func benchEvents(n, devices int, partitions int32) []*Event {
	evs := make([]*Event, n)
	offsets := make([]int64, partitions)
	for i := range evs {
		thing := fmt.Sprintf("dev-%04d", i%devices)
		p := PartitionOf(thing, partitions)
		env := schemas.Envelope{Type: schemas.EventPublish, Topic: "fleet/" + thing + "/telemetry", ClientID: thing, Principal: "anonymous",
			QoS: 1, ReceivedAt: t0.Add(time.Duration(i) * time.Millisecond).UnixNano()}
		status := "ok"
		if i%1000 == 0 {
			status = "error"
		}
		evs[i] = &Event{Partition: p, Offset: offsets[p], Thing: thing, Envelope: env, Headers: env.Headers(),
			Payload: fmt.Appendf(nil, `{"temp":%d,"hum":%d,"status":%q}`, 20+i%7, 40+i%11, status)}
		offsets[p]++
	}
	return evs
}

// BenchmarkReplay measures replay's events/s through the 10-rule set
// (the engine alone: events already read and decoded).
func BenchmarkReplay(b *testing.B) {
	ctx := context.Background()
	set := compileRules(b, benchRules)
	evs := benchEvents(200_000, 1000, 8)
	b.ReportAllocs()
	b.ResetTimer()
	outputs := 0
	cpu := cpuTime()
	for b.Loop() {
		eng, err := NewEngine(set, Options{Partitions: 8}, func(Output) error { outputs++; return nil })
		if err != nil {
			b.Fatal(err)
		}
		for _, ev := range evs {
			if err := eng.Add(ctx, ev); err != nil {
				b.Fatal(err)
			}
		}
		if err := eng.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, len(evs)*b.N, cpu)
	b.ReportMetric(float64(outputs)/float64(b.N), "outputs/op")
}

// BenchmarkHarnessBaseline is the same events through the same
// processors in the harness, one Records call per 4,096 events of a
// partition and no ticks: what the engine adds over the runtime's own
// work.
func BenchmarkHarnessBaseline(b *testing.B) {
	ctx := context.Background()
	set := compileRules(b, benchRules)
	evs := benchEvents(200_000, 1000, 8)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for b.Loop() {
		eng, err := NewEngine(set, Options{Partitions: 8}, func(Output) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		h := eng.h
		byPart := map[int32][]*Event{}
		for _, ev := range evs {
			byPart[ev.Partition] = append(byPart[ev.Partition], ev)
		}
		for _, pe := range byPart {
			for i := 0; i < len(pe); i += segmentMax {
				recs := recordsOf(pe[i:min(i+segmentMax, len(pe))])
				if _, err := h.Records(ctx, recs); err != nil {
					b.Fatal(err)
				}
			}
		}
		eng.Close(ctx)
	}
	reportRate(b, len(evs)*b.N, cpu)
}

func recordsOf(evs []*Event) []*kgo.Record {
	out := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		out[i] = e.record(schemas.DefaultTopics().Events)
	}
	return out
}

// cpuTime returns the CPU time this process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportRate reports n items per wall-clock second and per CPU second
// since cpu (the machine is shared: the CPU-second rate is the steadier
// of the two; GC on the second core counts).
func reportRate(b *testing.B, n int, cpu time.Duration) {
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(n)/(cpuTime()-cpu).Seconds(), "events/cpu-s")
}
