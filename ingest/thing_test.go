package ingest

import "testing"

func TestThingOf(t *testing.T) {
	tests := []struct{ client, topic, want string }{
		{"c1", "farm/sensors/1", "c1"},
		{"app", "$aws/things/fridge-1/shadow/update", "fridge-1"},
		{"app", "$aws/things/fridge-1/shadow/name/cfg/get", "fridge-1"},
		{"c1", "$aws/things/", "c1"},
		{"c1", "$aws/things//shadow/get", "c1"},
		{"c1", "$aws/things/x", "c1"},
		{"c1", "$aws/events/presence/connected/c1", "c1"},
	}
	for _, tt := range tests {
		if got := thingOf(tt.client, tt.topic); got != tt.want {
			t.Errorf("thingOf(%q, %q) = %q, want %q", tt.client, tt.topic, got, tt.want)
		}
	}
}
