// Package mqttload is a fast MQTT 3.1.1 load generator over real TCP
// connections, written against the raw protocol so that the generator is
// not the bottleneck when it measures a broker doing several hundred
// thousand messages per second on the same machine.
//
// Each connection runs one writer goroutine (encoding PUBLISH packets into a
// bufio.Writer from a prebuilt template, with zero allocations per message)
// and one reader goroutine (parsing CONNACK, PUBACK and PINGRESP with a
// bufio.Reader). QoS 1 connections keep at most Config.Window messages in
// flight; the publish→PUBACK latency of every message is recorded in a
// per-connection log-linear histogram that is merged at the end.
//
// Run drives one measurement (warm-up, measurement window, drain) and
// returns a Result; Command is the command-line front end used by
// `iotpipe bench mqtt` and by benchmarks/cmd/mqttload.
package mqttload
