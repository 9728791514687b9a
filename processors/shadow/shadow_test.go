package shadow_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestScenarios replays the scripts in testdata/scenarios/: each is a sequence of
// requests (a topic and a payload at a fixed clock) and the records the
// processor emits. Run with -rewrite to regenerate the expected output.
//
// Commands:
//
//	clock <unix seconds>                  set the clock
//	publish topic=<t> [client=<id>] [req=<id>] [key=<record key>]
//	<payload>                             run one publish event
//	read thing=<t> [name=<n>]             shadow.Read from the state
//	options [allow-other-things] [max-size=<n>] [max-depth=<n>] [rate-limit=<n>]
//	                                      start a fresh harness (empty state)
//	                                      with these options
func TestScenarios(t *testing.T) {
	datadriven.Walk(t, "testdata/scenarios", func(t *testing.T, path string) {
		s := newScenario(t, shadow.Options{})
		defer func() { s.h.Close() }()
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return s.run(t, d)
		})
	})
}

type scenario struct {
	h *processors.Harness
}

func newScenario(t testing.TB, opts shadow.Options) *scenario {
	h, err := processors.NewHarness(shadow.New(opts))
	if err != nil {
		t.Fatal(err)
	}
	return &scenario{h: h}
}

func (s *scenario) run(t *testing.T, d *datadriven.TestData) string {
	ctx := context.Background()
	switch d.Cmd {
	case "options":
		var opts shadow.Options
		for _, a := range d.CmdArgs {
			switch a.Key {
			case "max-size":
				opts.Limits.MaxSize, _ = strconv.Atoi(a.Vals[0])
			case "max-depth":
				opts.Limits.MaxDepth, _ = strconv.Atoi(a.Vals[0])
			case "rate-limit":
				opts.RateLimit, _ = strconv.Atoi(a.Vals[0])
			default:
				d.Fatalf(t, "unknown option %s", a.Key)
			}
		}
		now := s.h.Now
		s.h.Close()
		*s = *newScenario(t, opts)
		s.h.Now = now
		return "ok"
	case "clock":
		n, err := strconv.ParseInt(strings.TrimSpace(d.CmdArgs[0].Key), 10, 64)
		if err != nil {
			d.Fatalf(t, "clock: %v", err)
		}
		s.h.Now = time.Unix(n, 0).UTC()
		return "ok"
	case "publish":
		var topic, client, req, key string
		d.ScanArgs(t, "topic", &topic)
		d.MaybeScanArgs(t, "client", &client)
		d.MaybeScanArgs(t, "req", &req)
		d.MaybeScanArgs(t, "key", &key)
		r, isReq := shadow.ParseTopic(topic)
		if client == "" && isReq {
			client = r.Thing
		}
		if key == "" {
			key = r.Thing
		}
		env := schemas.Envelope{Topic: topic, ClientID: client, RequestID: req}
		out, err := s.h.Publish(ctx, key, env, []byte(d.Input))
		if err != nil {
			d.Fatalf(t, "publish: %v", err)
		}
		return formatRecords(out)
	case "read":
		var thing, name string
		d.ScanArgs(t, "thing", &thing)
		d.MaybeScanArgs(t, "name", &name)
		snap, err := s.h.Snapshot(0)
		if err != nil {
			d.Fatalf(t, "snapshot: %v", err)
		}
		get := func(k []byte) ([]byte, bool, error) {
			v, ok := snap[shadow.Name+"\x00"+string(k)]
			return []byte(v), ok, nil
		}
		sh, ok, err := shadow.Read(get, thing, name)
		if err != nil {
			return "error: " + err.Error()
		}
		var b strings.Builder
		fmt.Fprintf(&b, "exists=%t version=%d deleted=%t\n", ok, sh.Version, sh.Deleted)
		body, rej, err := shadow.ReadDocument(get, thing, name, s.h.Now)
		if err != nil {
			return "error: " + err.Error()
		}
		if rej != nil {
			fmt.Fprintf(&b, "status %d\n", rej.Code)
		}
		b.WriteString(pretty(body))
		return b.String()
	default:
		d.Fatalf(t, "unknown command %s", d.Cmd)
		return ""
	}
}

func formatRecords(recs []*kgo.Record) string {
	if len(recs) == 0 {
		return "(no records)"
	}
	var b strings.Builder
	topics := schemas.DefaultTopics()
	for _, r := range recs {
		switch r.Topic {
		case topics.Outbound:
			o := schemas.DecodeOutbound(r)
			fmt.Fprintf(&b, "outbound %s qos=%d key=%s", o.Topic, o.QoS, o.Key)
			if o.RequestID != "" {
				fmt.Fprintf(&b, " req=%s", o.RequestID)
			}
			b.WriteString("\n")
		case topics.Shadows:
			// The changelog record is shown compact, on one line.
			fmt.Fprintf(&b, "shadows key=%s\n%s\n", r.Key, r.Value)
			continue
		default:
			fmt.Fprintf(&b, "%s key=%s reason=%s\n", r.Topic, r.Key, schemas.HeaderValue(r.Headers, "dlq.reason"))
			continue
		}
		b.WriteString(pretty(r.Value))
		b.WriteString("\n")
	}
	return b.String()
}

func pretty(b []byte) string {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return "INVALID JSON: " + string(b)
	}
	return out.String()
}
