package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotpipe/iotpipe/internal/eventlog"
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// logClients is a processors.ClientFactory for an instance's embedded
// log: its address and the credentials it generated.
type logClients struct {
	addr  string
	creds *eventlog.Credentials
}

func (c logClients) Client(opts ...kgo.Opt) (*kgo.Client, error) {
	all := []kgo.Opt{kgo.SeedBrokers(c.addr)}
	if c.creds != nil {
		auth, err := c.creds.Opt()
		if err != nil {
			return nil, err
		}
		all = append(all, auth)
	}
	return kgo.NewClient(append(all, opts...)...)
}

// logClients returns a client factory for in's embedded log (which must
// have started once: it writes its credentials then).
func (in *instance) logClients() logClients {
	in.t.Helper()
	creds, err := eventlog.ReadCredentials(in.kafkaCredentials())
	if err != nil {
		in.t.Fatal(err)
	}
	return logClients{addr: fmt.Sprintf("127.0.0.1:%d", in.kafka), creds: creds}
}

// kafkaCredentials is the path of in's embedded log's credentials file.
func (in *instance) kafkaCredentials() string {
	return filepath.Join(in.dataDir, "kafka", eventlog.CredentialsFile)
}

// kill -9 during 20k shadow updates over 200 things, restart: every
// shadow's version equals its number of accepted updates (gapless, none
// applied twice), and the documents equal a rebuild from the log byte for
// byte.
func TestShadowCrashVersionsGaplessAndRebuildIdentical(t *testing.T) {
	in := newInstance(t)
	in.start()
	const things, each = 200, 100
	var wg sync.WaitGroup
	var acked atomic.Int64
	stop := make(chan struct{})
	clients := make([]paho.Client, things)
	for i := range clients {
		id := fmt.Sprintf("fridge-%03d", i)
		o := paho.NewClientOptions().AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", in.mqtt)).SetClientID(id).SetAutoReconnect(false)
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", id, tok.Error())
		}
		clients[i] = c
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < each; n++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`{"state":{"reported":{"n":%d,"door":%t}}}`, n, n%2 == 0)
				tok := c.Publish("$aws/things/"+id+"/shadow/update", 1, false, body)
				if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
					return // the kill
				}
				acked.Add(1)
			}
		}()
	}
	for acked.Load() < things*each/4 { // kill -9 a quarter of the way in
		time.Sleep(time.Millisecond)
	}
	in.kill()
	close(stop)
	wg.Wait()

	in.start()
	// Count the update requests the log holds per thing.
	updates := map[string]int{}
	total := 0
	for _, r := range in.readEvents() {
		env, err := schemas.DecodeEnvelope(r.Headers)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(env.Topic, "/shadow/update") {
			updates[string(r.Key)]++
			total++
		}
	}
	if total == 0 || total == things*each {
		t.Fatalf("the kill did not land mid-run: %d updates logged", total)
	}
	// Every shadow's version equals its number of updates in the log.
	deadline := time.Now().Add(90 * time.Second)
	for thing, n := range updates {
		for {
			resp, err := http.Get(in.url("/things/" + thing + "/shadow"))
			var doc struct{ Version int }
			if err == nil {
				json.NewDecoder(resp.Body).Decode(&doc)
				resp.Body.Close()
			}
			if doc.Version == n {
				break
			}
			if doc.Version > n {
				t.Fatalf("%s: version %d > %d updates in the log (an update applied twice)", thing, doc.Version, n)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: version %d, want %d", thing, doc.Version, n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// A rebuild from the log gives the same documents, byte for byte.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h, err := processors.Rebuild(ctx, in.logClients(), schemas.DefaultTopics().Events,
		[]processors.Processor{shadow.New(shadow.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rebuilt, err := h.Dump("shadow")
	if err != nil {
		t.Fatal(err)
	}
	in.cmd.Process.Signal(syscall.SIGTERM)
	in.cmd.Wait()
	in.cmd = nil
	in.checkLog()
	live, err := processors.DumpState(filepath.Join(in.dataDir, "state"), "shadow")
	if err != nil {
		t.Fatal(err)
	}
	if len(live) < len(updates) || len(live) != len(rebuilt) {
		t.Fatalf("live state has %d keys, rebuild %d, things updated %d", len(live), len(rebuilt), len(updates))
	}
	for k, v := range live {
		if rebuilt[k] != v {
			t.Fatalf("state %q differs from the rebuild:\nlive    %s\nrebuilt %s", k, v, rebuilt[k])
		}
	}
	t.Logf("%d updates over %d things logged before kill -9; versions gapless; %d state keys equal a rebuild byte for byte", total, len(updates), len(live))
}
