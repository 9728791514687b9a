package schemas

import (
	"strings"
	"testing"
)

func TestEventKey(t *testing.T) {
	tests := []struct{ client, topic, want string }{
		{"c1", "farm/sensors/1", "c1"},
		{"app", "$aws/things/fridge-1/shadow/update", "fridge-1"},
		{"app", "$aws/things/fridge-1/shadow/name/cfg/get", "fridge-1"},
		{"app", "$aws/things/fridge-1/jobs/get", "fridge-1"},
		{"c1", "$aws/things/", "c1"},
		{"c1", "$aws/things//shadow/get", "c1"},
		{"c1", "$aws/things/x", "c1"},
		{"c1", "$AWS/things/x/shadow/get", "c1"},
		{"c1", "$aws/events/presence/connected/c1", "c1"},
		{"c1", "", "c1"},
	}
	for _, tt := range tests {
		if got := EventKey(tt.client, tt.topic); got != tt.want {
			t.Errorf("EventKey(%q, %q) = %q, want %q", tt.client, tt.topic, got, tt.want)
		}
	}
}

// FuzzEventKey: the key is the client id or the thing level of a thing
// topic, never empty when the client id is not.
func FuzzEventKey(f *testing.F) {
	f.Add("c1", "$aws/things/lamp/shadow/update")
	f.Add("c1", "farm/1")
	f.Add("", "$aws/things//x")
	f.Fuzz(func(t *testing.T, client, topic string) {
		key := EventKey(client, topic)
		if key == client {
			return
		}
		if key == "" || strings.Contains(key, "/") || !strings.HasPrefix(topic, thingTopicPrefix+key+"/") || TopicThing(topic) != key {
			t.Fatalf("EventKey(%q, %q) = %q", client, topic, key)
		}
	})
}
