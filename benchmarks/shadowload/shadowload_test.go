package shadowload

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/processors/shadow"
	"github.com/iotpipe/iotpipe/schemas"
)

// Every generated record is a shadow update request of its thing, keyed
// by the thing, with a JSON state; the same seed gives the same records.
func TestRecords(t *testing.T) {
	a, b := Records(500, 20, 7, "ev"), Records(500, 20, 7, "ev")
	things := map[string]bool{}
	for i, r := range a {
		env, err := schemas.DecodeEnvelope(r.Headers)
		if err != nil {
			t.Fatal(err)
		}
		req, ok := shadow.ParseTopic(env.Topic)
		if !ok || req.Op != shadow.OpUpdate || req.Thing != string(r.Key) || env.ClientID != req.Thing || r.Offset != int64(i) || r.Topic != "ev" {
			t.Fatalf("record %d: %s key %s client %s offset %d", i, env.Topic, r.Key, env.ClientID, r.Offset)
		}
		if !bytes.HasPrefix(r.Value, []byte(`{"state":{`)) || !bytes.Equal(r.Value, b[i].Value) {
			t.Fatalf("record %d: %s (again: %s)", i, r.Value, b[i].Value)
		}
		things[req.Thing] = true
	}
	if len(things) < 15 || len(things) > 20 {
		t.Fatalf("%d things, want up to 20", len(things))
	}
}

// Run returns only once every update was accepted (one changelog record
// each): a small run finishes within its deadline and reports what it
// measured.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	started, stopped := 0, 0
	res, err := Run(ctx, Options{Updates: 3000, Things: 50, Partitions: 2, Dir: t.TempDir(),
		OnStart: func() { started++ }, OnStop: func() { stopped++ }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Updates != 3000 || res.Elapsed <= 0 || res.Rate() <= 0 || started != 1 || stopped != 1 {
		t.Fatalf("result %+v, start %d, stop %d", res, started, stopped)
	}
	if !strings.Contains(res.String(), "3000 shadow updates in") {
		t.Fatalf("String() = %q", res)
	}
}

func TestCommand(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--updates", "500", "--things", "10", "--quiet"}, 0, "500 shadow updates in"},
		{[]string{"--updates", "0"}, 2, ""},
		{[]string{"extra"}, 2, ""},
		{[]string{"--nope"}, 2, ""},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		if code := Command(context.Background(), tt.args, &stdout, &stderr); code != tt.code || !strings.Contains(stdout.String(), tt.out) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d with %q", tt.args, code, stdout.String(), stderr.String(), tt.code, tt.out)
		}
	}
}
