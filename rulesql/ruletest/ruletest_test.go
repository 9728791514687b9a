package ruletest

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/iotpipe/iotpipe/rulesql"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

func TestEventInput(t *testing.T) {
	now := time.UnixMilli(42)
	ts := int64(7)
	tests := []struct {
		name    string
		ev      Event
		payload any
		raw     string
		thing   string
		stamp   int64
	}{
		{"object", Event{Topic: "t", Payload: []byte(`{"a": 1}`), ClientID: "c", Timestamp: &ts}, map[string]any{"a": int64(1)}, `{"a": 1}`, "c", 7},
		{"json in a string", Event{Topic: "t", Payload: []byte(`"[1, 2.5]"`), Thing: "th", ClientID: "c"}, []any{int64(1), 2.5}, "[1, 2.5]", "th", 42},
		{"binary string", Event{Topic: "t", Payload: []byte(`"\u0001abc"`)}, value.Undefined, "\x01abc", "", 42},
		{"no payload", Event{Topic: "t"}, value.Undefined, "", "", 42},
	}
	for _, tt := range tests {
		in, err := tt.ev.Input(now)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if !reflect.DeepEqual(in.Payload, tt.payload) || string(in.Raw) != tt.raw || in.Thing != tt.thing || in.Timestamp != tt.stamp {
			t.Errorf("%s: input = %+v", tt.name, in)
		}
	}
}

func TestRunErrors(t *testing.T) {
	rules, err := rulesql.Compile("SELECT a FROM 't'")
	if err != nil {
		t.Fatal(err)
	}
	set, _ := rulesql.NewSet(rules)
	tests := []struct{ input, want string }{
		{"{\"topic\": \"t\", \"payload\": {}}\nnot json\n", "input line 2:"},
		{"{\"payload\": {}}\n", "input line 1: topic is required"},
		{"{\"topic\": \"t\", \"payload\": {\"a\": 1}}\n# comment\n\n{\"topic\": \"t\", \"payload\": {bad}}\n", "input line 4:"},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		err := Run(context.Background(), set, strings.NewReader(tt.input), &out, Options{})
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("Run(%q) error = %v, want prefix %q", tt.input, err, tt.want)
		}
	}
}

func TestMemState(t *testing.T) {
	m := MemState{}
	v := []byte("x")
	m.Set([]byte("k"), v)
	v[0] = 'y'
	got, ok, err := m.Get([]byte("k"))
	if err != nil || !ok || string(got) != "x" {
		t.Errorf("Get = %q %v %v (Set must copy)", got, ok, err)
	}
	if _, ok, _ := m.Get([]byte("none")); ok {
		t.Error("missing key found")
	}
}
