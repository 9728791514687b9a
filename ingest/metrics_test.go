package ingest

import (
	"testing"
	"time"
)

// TestPubackLatencyCountsQoS1Acks: iotpipe_ingest_puback_seconds has a
// sample for every PUBACK written, none for a QoS 0 publish nor for a
// lifecycle event, while iotpipe_ingest_produce_seconds counts every
// record the log acknowledged.
func TestPubackLatencyCountsQoS1Acks(t *testing.T) {
	r := newRig(t, Options{})
	m := r.srv.metrics
	pub := client(t, r.addr, "latency-1", false)
	waitCounter(t, m.lifecycle.WithLabelValues("connected"), 1)
	const qos1, qos0 = 7, 3
	for i := range qos1 + qos0 {
		qos := byte(1)
		if i >= qos1 {
			qos = 0
		}
		if tok := pub.Publish("latency/1", qos, false, "x"); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d: %v", i, tok.Error())
		}
	}
	waitCounter(t, m.logged, qos1+qos0+1) // and the connected event
	if got := histogramCount(m.pubackLatency); got != qos1 {
		t.Errorf("iotpipe_ingest_puback_seconds has %d samples, want %d (the QoS 1 publishes)", got, qos1)
	}
	if got := histogramCount(m.produceLatency); got != qos1+qos0+1 {
		t.Errorf("iotpipe_ingest_produce_seconds has %d samples, want %d (the publishes and the connected event)", got, qos1+qos0+1)
	}
}
