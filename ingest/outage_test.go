package ingest

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// externalKafka is a broker in its own right (kfake over TCP with a data
// dir) that the test can stop and start again on the same port.
type externalKafka struct {
	t    *testing.T
	dir  string
	port int
	c    *kfake.Cluster
}

func (k *externalKafka) start() {
	k.t.Helper()
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after a stop
		k.c, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(k.port), kfake.DataDir(k.dir),
			kfake.SeedTopics(2, schemas.DefaultTopics().All()...))
		if err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	k.t.Fatalf("start kafka: %v", err)
}

func (k *externalKafka) stop() { k.c.Close() }

func TestLogUnavailableNotAcknowledged(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	k := &externalKafka{t: t, dir: t.TempDir(), port: port}
	k.start()
	defer func() { k.stop() }()
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	prod, err := kgo.NewClient(append(append([]kgo.Opt{kgo.SeedBrokers(addr)}, ProducerOpts()...),
		kgo.RecordDeliveryTimeout(2*time.Second), kgo.RetryTimeout(2*time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	srv, err := New(prod, Options{MQTTAddr: "127.0.0.1:0", Dev: true, AckTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	mqttAddr := srv.MQTTAddr().String()

	// Acknowledged while the broker is up.
	for _, v5 := range []bool{false, true} {
		rc := dialRaw(t, mqttAddr, fmt.Sprintf("before-%v", v5), v5)
		rc.c.Write(rc.publish("t/before", 7, []byte(`{"ok":1}`)))
		if typ, body := rc.read(); typ != 0x40 || body[0] != 0 || body[1] != 7 {
			t.Fatalf("v5=%v: want PUBACK 7, got 0x%x %v", v5, typ, body)
		}
	}

	k.stop()

	// MQTT 5: a PUBACK with a failure reason code.
	rc5 := dialRaw(t, mqttAddr, "during-v5", true)
	rc5.c.Write(rc5.publish("t/during", 9, []byte(`{"lost":1}`)))
	typ, body := rc5.read()
	if typ != 0x40 || len(body) < 3 || body[1] != 9 || body[2] < 0x80 {
		t.Fatalf("v5 during outage: want PUBACK 9 with failure code, got 0x%x %v", typ, body)
	}
	// MQTT 3.1.1: the connection is closed, with no PUBACK and no DISCONNECT.
	rc3 := dialRaw(t, mqttAddr, "during-v3", false)
	rc3.c.Write(rc3.publish("t/during", 11, []byte(`{"lost":1}`)))
	if typ, body := rc3.read(); typ != 0 {
		t.Fatalf("v3 during outage: want the connection closed, got 0x%x %v", typ, body)
	}

	k.start()

	// Recovery: publishes are acknowledged again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		rc := dialRaw(t, mqttAddr, "after", false)
		rc.c.Write(rc.publish("t/after", 13, []byte(`{"ok":2}`)))
		typ, body := rc.read()
		if typ == 0x40 && body[1] == 13 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after the broker returned: 0x%x %v", typ, body)
		}
		rc.c.Close()
		time.Sleep(500 * time.Millisecond)
	}

	// Nothing acknowledged was lost: both "before" records and "after" are in the log.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(schemas.DefaultTopics().Events),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	seen := map[string]int{}
	for seen["t/before"] < 2 || seen["t/after"] < 1 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("acknowledged publishes missing from the log: %v", seen)
		}
		fs.EachRecord(func(r *kgo.Record) {
			env, err := schemas.DecodeEnvelope(r.Headers)
			if err == nil && env.Type == schemas.EventPublish {
				seen[env.Topic]++
			}
		})
	}
}
