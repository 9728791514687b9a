package replay

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
	return eventsEvery(n, devices, partitions, time.Millisecond)
}

// eventsEvery is benchEvents with the events every apart.
func eventsEvery(n, devices int, partitions int32, every time.Duration) []*Event {
	evs := make([]*Event, n)
	offsets := make([]int64, partitions)
	for i := range evs {
		thing := fmt.Sprintf("dev-%04d", i%devices)
		p := PartitionOf(thing, partitions)
		env := schemas.Envelope{Type: schemas.EventPublish, Topic: "fleet/" + thing + "/telemetry", ClientID: thing, Principal: "anonymous",
			QoS: 1, ReceivedAt: t0.Add(time.Duration(i) * every).UnixNano()}
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
// (the engine alone: events already read and decoded), its 8 partitions
// on GOMAXPROCS workers.
func BenchmarkReplay(b *testing.B) { benchReplay(b, 0) }

// BenchmarkReplayOneWorker is BenchmarkReplay with the partitions on one
// worker: what the workers add, compared in the same run.
func BenchmarkReplayOneWorker(b *testing.B) { benchReplay(b, 1) }

// BenchmarkReplayNoTicks is BenchmarkReplay without the rules that tick
// (the window r6 and the FOR rule r7): nothing runs at the seconds the
// events cross.
func BenchmarkReplayNoTicks(b *testing.B) { benchReplaySet(b, noTickRules(), 0) }

// noTickRules returns benchRules without r6 and r7.
func noTickRules() string {
	var kept []string
	for _, r := range strings.Split(benchRules, ";\n") {
		if !strings.HasPrefix(r, "CREATE RULE r6 ") && !strings.HasPrefix(r, "CREATE RULE r7 ") {
			kept = append(kept, r)
		}
	}
	return strings.Join(kept, ";\n")
}

func benchReplay(b *testing.B, workers int) { benchReplaySet(b, benchRules, workers) }

// BenchmarkReplayBatchPerSecond is BenchmarkReplay with a harness batch
// per segment and per tick (processors.Harness.BatchEvents 0), as before
// batches spanned ticks.
func BenchmarkReplayBatchPerSecond(b *testing.B) {
	defer func(n int) { batchEvents = n }(batchEvents)
	batchEvents = 0
	benchReplay(b, 0)
}

func benchReplaySet(b *testing.B, rules string, workers int) {
	ctx := context.Background()
	set := compileRules(b, rules)
	evs := benchEvents(200_000, 1000, 8)
	b.ReportAllocs()
	b.ResetTimer()
	outputs := 0
	cpu := cpuTime()
	for b.Loop() {
		eng, err := NewEngine(set, Options{Partitions: 8, Workers: workers}, func(Output) error { outputs++; return nil })
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

// benchLog returns an embedded log holding n events of 1,000 devices,
// 1 ms apart (receive times and record timestamps), over 8 partitions.
func benchLog(b *testing.B, n int) *history {
	b.Helper()
	h := newHistory(b, 8)
	cl, err := h.l.Client(kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	const batch = 20_000
	for i := 0; i < n; i += batch {
		recs := make([]*kgo.Record, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			thing := fmt.Sprintf("dev-%04d", j%1000)
			rx := t0.Add(time.Duration(j) * time.Millisecond)
			env := schemas.Envelope{Type: schemas.EventPublish, Topic: "fleet/" + thing + "/telemetry", ClientID: thing, Principal: "anonymous", QoS: 1, ReceivedAt: rx.UnixNano()}
			recs = append(recs, &kgo.Record{Topic: h.log.Topic, Key: []byte(thing), Headers: env.Headers(), Timestamp: rx,
				Value: fmt.Appendf(nil, `{"temp":%d,"hum":%d,"status":"ok"}`, 20+j%7, 40+j%11)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			b.Fatal(err)
		}
	}
	return h
}

// BenchmarkSeekByTime measures planning a read of the last minute of a
// log of 1M events (8 partitions): ListOffsets by time for --from and
// --to plus the start and end offsets. Compare with
// BenchmarkSeekByTimeSmall (100k events): the cost does not grow with
// the log.
func BenchmarkSeekByTime(b *testing.B)      { benchSeek(b, 1_000_000) }
func BenchmarkSeekByTimeSmall(b *testing.B) { benchSeek(b, 100_000) }

// BenchmarkSeekByTime10M is BenchmarkSeekByTime on a log of 10M events
// (issue 24's figure; writing the log takes most of its minute).
func BenchmarkSeekByTime10M(b *testing.B) { benchSeek(b, 10_000_000) }

func benchSeek(b *testing.B, n int) {
	h := benchLog(b, n)
	ctx := context.Background()
	end := t0.Add(time.Duration(n) * time.Millisecond)
	sel := Selection{From: end.Add(-time.Minute), To: end}
	b.ResetTimer()
	var plan Plan
	for b.Loop() {
		var err error
		if plan, err = PlanRead(ctx, h.log, sel); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	// The plan covers the minute plus SeekSlack before it, not the log.
	if r := plan.Records(); r > 2*60_000+100 {
		b.Fatalf("the plan covers %d records of %d", r, n)
	}
}

// BenchmarkReadLog measures reading and decoding events from the
// embedded log over TCP (200k events, 8 partitions merged by receive
// time): iotpipe events without printing.
func BenchmarkReadLog(b *testing.B) {
	benchFromLog(b, func(Plan) (func(context.Context, *Event) error, func(context.Context) error) {
		return func(context.Context, *Event) error { return nil }, func(context.Context) error { return nil }
	})
}

// BenchmarkReplayFromLog is BenchmarkReplay reading the events from the
// embedded log: iotpipe replay end to end, without printing.
func BenchmarkReplayFromLog(b *testing.B) {
	set := compileRules(b, benchRules)
	benchFromLog(b, func(plan Plan) (func(context.Context, *Event) error, func(context.Context) error) {
		eng, err := NewEngine(set, Options{Partitions: plan.Partitions}, func(Output) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		return eng.Add, eng.Close
	})
}

// benchFromLog reads a 200k-event log over and over, passing every event
// to what start returns.
func benchFromLog(b *testing.B, start func(Plan) (add func(context.Context, *Event) error, done func(context.Context) error)) {
	h := benchLog(b, 200_000)
	ctx := context.Background()
	b.ResetTimer()
	cpu := cpuTime()
	n := 0
	for b.Loop() {
		plan, err := PlanRead(ctx, h.log, Selection{})
		if err != nil {
			b.Fatal(err)
		}
		add, done := start(plan)
		if err := Read(ctx, h.log, Selection{}, plan, nil, func(e *Event) error { n++; return add(ctx, e) }); err != nil {
			b.Fatal(err)
		}
		if err := done(ctx); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, n, cpu)
}
