package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Two `iotpipe process` nodes share the processors' consumer group: when
// the second joins, the partitions it takes over start with no state there
// and are restored from the shadows changelog; when the first leaves, the
// second takes the rest the same way. Through both hand-overs every
// shadow's version stays the number of updates it got, and its document
// the last one.
func TestProcessorNodesHandOverShadows(t *testing.T) {
	in := newInstance(t)
	in.startIngest()
	const things = 12
	sent := 0
	// round updates every thing's shadow over HTTP (answered once applied,
	// or 504 while partitions move: then it is in the log and applied
	// later).
	round := func() {
		t.Helper()
		for i := range things {
			body := fmt.Sprintf(`{"state":{"reported":{"round":%d}}}`, sent)
			req, _ := http.NewRequest(http.MethodPost, in.url(fmt.Sprintf("/things/lamp-%d/shadow", i)), strings.NewReader(body))
			req.Header.Set("X-Client-Id", fmt.Sprintf("lamp-%d", i)) // the device itself (the nodes run without --dev)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 && resp.StatusCode != http.StatusGatewayTimeout {
				t.Fatalf("update lamp-%d: %d %s", i, resp.StatusCode, b)
			}
		}
		sent++
	}
	// check waits until every shadow has version sent and reports the
	// last round.
	check := func(stage string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for i := range things {
			for {
				var doc struct {
					Version int64 `json:"version"`
					State   struct {
						Reported struct {
							Round int `json:"round"`
						} `json:"reported"`
					} `json:"state"`
				}
				req, _ := http.NewRequest(http.MethodGet, in.url(fmt.Sprintf("/things/lamp-%d/shadow", i)), nil)
				req.Header.Set("X-Client-Id", fmt.Sprintf("lamp-%d", i))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				_ = json.Unmarshal(b, &doc)
				if resp.StatusCode == 200 && doc.Version == int64(sent) && doc.State.Reported.Round == sent-1 {
					break
				}
				if doc.Version > int64(sent) {
					t.Fatalf("%s: lamp-%d at version %d after %d updates (applied twice): %s", stage, i, doc.Version, sent, b)
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: lamp-%d is %d %s, want version %d", stage, i, resp.StatusCode, b, sent)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}

	a := in.startProcess("proc-a").cmd
	for range 3 {
		round()
	}
	check("one node")
	in.startProcess("proc-b") // takes over some partitions, with no state of its own
	// Wait until the group has split the partitions between the nodes.
	cl, err := in.logClients().Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		groups, err := kadm.NewClient(cl).DescribeGroups(context.Background(), "iotpipe-processors")
		if err != nil {
			t.Fatal(err)
		}
		split := 0
		for _, m := range groups["iotpipe-processors"].Members {
			if c, ok := m.Assigned.AsConsumer(); ok && len(c.Topics) > 0 && len(c.Topics[0].Partitions) > 0 {
				split++
			}
		}
		if split == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the group did not give both nodes partitions: %+v", groups["iotpipe-processors"].Members)
		}
	}
	for range 3 {
		round()
	}
	check("two nodes")
	if err := a.Process.Signal(syscall.SIGTERM); err != nil { // leaves the group
		t.Fatal(err)
	}
	a.Wait()
	for range 3 {
		round()
	}
	check("the second node alone")
}
