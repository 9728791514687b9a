package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/schemas"
)

var topics = schemas.DefaultTopics()

// restartable lets a test replace the processor behind a Harness, as a
// process restart would: the state store stays, the memory goes.
type restartable struct{ p *Processor }

func (r *restartable) Name() string { return r.p.Name() }
func (r *restartable) Process(ctx context.Context, tx *processors.Tx, ev *processors.Event) error {
	return r.p.Process(ctx, tx, ev)
}
func (r *restartable) Tick(ctx context.Context, tx *processors.Tx, now time.Time) error {
	return r.p.Tick(ctx, tx, now)
}

type rig struct {
	t  testing.TB
	h  *processors.Harness
	r  *restartable
	o  Options
	rs *rulesql.Set
}

func compileSet(t testing.TB, src string) *rulesql.Set {
	t.Helper()
	rules, err := rulesql.Compile(src, rulesql.WithFile("test.sql"))
	if err != nil {
		t.Fatalf("compile rules: %v", err)
	}
	set, err := rulesql.NewSet(rules)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func newRig(t testing.TB, src string, o Options) *rig {
	t.Helper()
	set := compileSet(t, src)
	p := New(o)
	p.SetRules(set)
	r := &restartable{p: p}
	h, err := processors.NewHarness(r)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return &rig{t: t, h: h, r: r, o: o, rs: set}
}

// restart replaces the processor with a fresh one over the same state.
func (g *rig) restart() {
	p := New(g.o)
	p.SetRules(g.rs)
	g.r.p = p
	g.h.Restart()
}

func (g *rig) publish(thing, topic, payload string) []*kgo.Record {
	g.t.Helper()
	recs, err := g.h.Publish(context.Background(), thing, schemas.Envelope{Topic: topic, ClientID: thing, Principal: "cert-" + thing}, []byte(payload))
	if err != nil {
		g.t.Fatal(err)
	}
	return recs
}

// batches runs each batch of records as one batch and returns what was
// emitted as "topic key value" lines.
func (g *rig) batches(batches [][]*kgo.Record) []string {
	g.t.Helper()
	var out []string
	for _, b := range batches {
		recs, err := g.h.Records(context.Background(), b)
		if err != nil {
			g.t.Fatal(err)
		}
		for _, r := range recs {
			out = append(out, fmt.Sprintf("%s %s %s", r.Topic, r.Key, r.Value))
		}
	}
	return out
}

func (g *rig) tick() []*kgo.Record {
	g.t.Helper()
	recs, err := g.h.Tick(context.Background(), 0)
	if err != nil {
		g.t.Fatal(err)
	}
	return recs
}

func only(recs []*kgo.Record, topic string) []*kgo.Record {
	var out []*kgo.Record
	for _, r := range recs {
		if r.Topic == topic {
			out = append(out, r)
		}
	}
	return out
}

func actions(t testing.TB, recs []*kgo.Record) []schemas.Action {
	t.Helper()
	var out []schemas.Action
	for _, r := range only(recs, topics.Actions) {
		var a schemas.Action
		if err := json.Unmarshal(r.Value, &a); err != nil {
			t.Fatalf("action record %s: %v", r.Value, err)
		}
		if a.Key != string(r.Key) {
			t.Errorf("record key %q, action key %q", r.Key, a.Key)
		}
		out = append(out, a)
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// failingShadow fails every get_thing_shadow call.
type failingShadow struct{}

func (failingShadow) ThingShadow(_ *processors.Tx, thing, name string, _ time.Time) (any, bool, error) {
	return nil, false, errors.New("shadow view unavailable")
}

func httptestRecorder(t testing.TB, p *Processor) []byte {
	t.Helper()
	w := httptest.NewRecorder()
	p.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/api/rules", nil))
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/rules: %d %s", w.Code, w.Body)
	}
	return w.Body.Bytes()
}
