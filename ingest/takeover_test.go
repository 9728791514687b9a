package ingest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/schemas"
)

// Concurrent CONNECTs with one client id leave one live session: the
// others are taken over, each with a disconnected event (reason
// DUPLICATE_CLIENTID) logged before the next connected event, and the
// survivor's subscription outlives the connections it replaced.
func TestDuplicateClientIDTakeover(t *testing.T) {
	r := newRig(t, Options{})
	pub := client(t, r.addr, "dup-publisher", false)
	const rounds, racers = 30, 4
	for round := 0; round < rounds; round++ {
		id := fmt.Sprintf("dup-%d", round)
		o := connectOpts{v5: round%2 == 1, clean: round%3 != 2}
		start := make(chan struct{})
		conns := make([]*rawClient, racers)
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i := range conns {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				conns[i], _, errs[i] = connectRaw(t, r.addr, id, o)
			}(i)
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		var live []*rawClient
		for _, rc := range conns {
			if rc.alive() {
				live = append(live, rc)
			}
		}
		if len(live) != 1 {
			t.Fatalf("round %d (%+v): %d live connections for client id %s, want 1", round, o, len(live), id)
		}
		survivor := live[0]
		topic := "dup/cmd/" + id
		survivor.subscribe(topic, 1)
		if tok := pub.Publish(topic, 1, false, "cmd-"+id); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
		survivor.c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if gotTopic, payload := survivor.nextPublish(); gotTopic != topic || payload != "cmd-"+id {
			t.Fatalf("round %d: survivor got %q %q", round, gotTopic, payload)
		}
	}

	// Every round's lifecycle records, in log order: connected, then for
	// each takeover a disconnected (DUPLICATE_CLIENTID) before the next
	// connected.
	want := rounds * (2*racers - 1)
	seq := map[string][]string{}
	for _, rec := range r.readAll(t, r.log.Topics().Events, want) {
		env, err := schemas.DecodeEnvelope(rec.Headers)
		if err != nil || (env.Type != schemas.EventConnected && env.Type != schemas.EventDisconnected) || env.ClientID == "dup-publisher" {
			continue
		}
		var ev presenceEvent
		if err := json.Unmarshal(rec.Value, &ev); err != nil {
			t.Fatalf("presence payload %s: %v", rec.Value, err)
		}
		s := string(env.Type)
		if env.Type == schemas.EventDisconnected {
			s += ":" + ev.DisconnectReason
		}
		seq[env.ClientID] = append(seq[env.ClientID], s)
	}
	for round := 0; round < rounds; round++ {
		id := fmt.Sprintf("dup-%d", round)
		got := seq[id]
		var exp []string
		for i := 0; i < racers; i++ {
			if i > 0 {
				exp = append(exp, "disconnected:DUPLICATE_CLIENTID")
			}
			exp = append(exp, "connected")
		}
		if fmt.Sprint(got[:min(len(got), len(exp))]) != fmt.Sprint(exp) {
			t.Errorf("%s lifecycle records %v, want %v", id, got, exp)
		}
	}
}
