// Package e2e is the end-to-end benchmark of iotpipe (`iotpipe bench
// e2e`): it starts the iotpipe binary (`run` with its embedded log and
// ClickHouse, and `ingest` alone) on free ports in temporary data
// directories, drives it with the raw load generator (benchmarks/mqttload)
// and the fleet simulator (devices/fleet), and measures what issue 23's
// goals are stated in, as ratios within one run:
//
//   - capacity: the highest offered rate at which the processors' and
//     the sink's backlogs stay bounded (a search over rates), with the
//     fixed 10 rules in rules/ and without rules, against ingest alone;
//   - latency at shares of that capacity: publish→PUBACK for every
//     publish, publish→ClickHouse row, →webhook and →republish for
//     stamped probe points that travel with the load;
//   - CPU seconds per million events per process (iotpipe, its chDB
//     child, the harness) from /proc, and a CPU profile at capacity;
//   - RSS per idle connection of ingest alone (benchmarks/idleconns);
//   - the PEWMA rule's detection of the wind profile's injected spikes;
//   - that every acknowledged publish is exactly one telemetry row (the
//     run fails otherwise).
//
// It writes REPORT.md, result.json, PNG plots and the profiles.
package e2e
