// Package reliability is the fault harness of iotpipe's reliability
// suite (`make reliability`, and its short form in `make test`): a QoS 1
// load of MQTT 5 devices that put an id in every payload and reconnect
// after a fault, a Ledger of what was acknowledged to check against the
// log, the faults that need no iotpipe internals (seeded kill moments, a
// ballast that fills a filesystem, killing a child process), and the
// Table of figures the suite prints.
//
// The suite itself is cmd/iotpipe's TestReliability: it runs `iotpipe
// run` with the embedded ClickHouse, a webhook rule and a command rule
// under this load, injects one fault per subtest and checks the
// invariants from the log, the processors' state and ClickHouse.
package reliability
