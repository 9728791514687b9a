package schemas

import (
	"strings"
	"testing"
)

func TestEventKey(t *testing.T) {
	tests := []struct{ client, thing, topic, want string }{
		{"c1", "", "farm/sensors/1", "c1"},
		{"app", "", "$aws/things/fridge-1/shadow/update", "fridge-1"},
		{"app", "", "$aws/things/fridge-1/shadow/name/cfg/get", "fridge-1"},
		{"app", "", "$aws/things/fridge-1/jobs/get", "fridge-1"},
		{"c1", "", "$aws/things/", "c1"},
		{"c1", "", "$aws/things//shadow/get", "c1"},
		{"c1", "", "$aws/things/x", "c1"},
		{"c1", "", "$AWS/things/x/shadow/get", "c1"},
		{"c1", "", "$aws/events/presence/connected/c1", "c1"},
		{"c1", "", "", "c1"},
		// The connection's attached thing keys its own events, whatever
		// its client id; a thing topic still names its thing.
		{"sdk-7f3a", "lamp-1", "dt/lamp-1/temp", "lamp-1"},
		{"sdk-7f3a", "lamp-1", "$aws/events/presence/connected/sdk-7f3a", "lamp-1"},
		{"sdk-7f3a", "lamp-1", "$aws/things/lamp-1/shadow/update", "lamp-1"},
		{"sdk-7f3a", "lamp-1", "$aws/things/fridge-1/shadow/get", "fridge-1"},
		{"lamp-1", "lamp-1", "dt/x", "lamp-1"},
	}
	for _, tt := range tests {
		if got := EventKey(tt.client, tt.thing, tt.topic); got != tt.want {
			t.Errorf("EventKey(%q, %q, %q) = %q, want %q", tt.client, tt.thing, tt.topic, got, tt.want)
		}
	}
}

// FuzzEventKey: the key is the thing level of a thing topic, else the
// attached thing, else the client id; never empty when the client id is
// not.
func FuzzEventKey(f *testing.F) {
	f.Add("c1", "", "$aws/things/lamp/shadow/update")
	f.Add("c1", "lamp", "farm/1")
	f.Add("", "", "$aws/things//x")
	f.Fuzz(func(t *testing.T, client, thing, topic string) {
		key := EventKey(client, thing, topic)
		if tt := TopicThing(topic); tt != "" {
			if key != tt || strings.Contains(key, "/") || !strings.HasPrefix(topic, thingTopicPrefix+key+"/") {
				t.Fatalf("EventKey(%q, %q, %q) = %q", client, thing, topic, key)
			}
			return
		}
		if (thing != "" && key != thing) || (thing == "" && key != client) {
			t.Fatalf("EventKey(%q, %q, %q) = %q", client, thing, topic, key)
		}
	})
}
