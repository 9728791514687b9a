package ingest

import (
	"strings"
	"testing"
)

func TestCheckTopic(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		topic string
		err   string // substring of the error, "" for valid
	}{
		{"farm/sensors/1", ""},
		{"", "empty"},
		{"a/+/b", "wildcard"},
		{"a/#", "wildcard"},
		{"a/\x00b", "NUL"},
		{"bad/\xff", "UTF-8"},
		{long(256), ""},
		{long(257), "257 bytes"},
		{"1/2/3/4/5/6/7/8", ""},
		{"1/2/3/4/5/6/7/8/9", "8 slashes"},
		{"/2/3/4/5/6/7/8/", "8 slashes"},
		// Basic Ingest: $aws/rules/{rule}/ counts neither bytes nor slashes.
		{"$aws/rules/r1/1/2/3/4/5/6/7/8", ""},
		{"$aws/rules/r1/1/2/3/4/5/6/7/8/9", "8 slashes"},
		{"$aws/rules/r1/" + long(256), ""},
		{"$aws/rules/r1/" + long(257), "257 bytes"},
		{"$aws/things/lamp/shadow/name/cfg/update/accepted", ""}, // 7 slashes
		{"$aws/things/" + long(128) + "/shadow/update", ""},
		{"$aws/things/" + long(129) + "/shadow/update", "thing name of 129 bytes"},
	}
	for _, tt := range tests {
		err := checkTopic(tt.topic)
		if (err == nil) != (tt.err == "") || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("checkTopic(%.40q) = %v, want %q", tt.topic, err, tt.err)
		}
	}
}

func TestCheckClientID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"sensor-1", true},
		{strings.Repeat("c", 128), true},
		{strings.Repeat("c", 129), false},
		{"a+b", false},
		{"a#", false},
		{"a/b", true},
	}
	for _, tt := range tests {
		if err := checkClientID(tt.id); (err == nil) != tt.ok {
			t.Errorf("checkClientID(%.20q) = %v", tt.id, err)
		}
	}
}

func TestReservedTopic(t *testing.T) {
	tests := []struct {
		topic    string
		reserved bool
	}{
		{"farm/1", false},
		{"$SYS/broker/uptime", true},
		{"$sys/x", true},
		{"$aws/events/presence/connected/dev-1", true},
		{"$AWS/Events/presence/connected/dev-1", true},
		{"$aws/events/subscriptions/subscribed/dev-1", true},
		{"$aws/events", true},
		{"$aws/things/lamp/shadow/update", false},
		{"$aws/things/lamp/shadow/get", false},
		{"$aws/things/lamp/shadow/delete", false},
		{"$aws/things/lamp/shadow/name/cfg/update", false},
		{"$aws/things/lamp/shadow/update/accepted", true},
		{"$aws/things/lamp/shadow/update/rejected", true},
		{"$aws/things/lamp/shadow/update/delta", true},
		{"$aws/things/lamp/shadow/update/documents", true},
		{"$aws/things/lamp/shadow/get/accepted", true},
		{"$aws/things/lamp/shadow/delete/rejected", true},
		{"$aws/things/lamp/shadow/name/cfg/update/delta", true},
		{"$aws/things/lamp/shadow/name/cfg/get/accepted", true},
		{"$AWS/things/lamp/Shadow/Update/Accepted", true},
		{"$aws/things/lamp/shadow/update/other", false},
		{"$aws/things/lamp/jobs/get", false},
		{"$aws/rules/r1/farm/1", false},
		{"$other/events/x", false},
	}
	for _, tt := range tests {
		if got := reservedTopic(tt.topic) != ""; got != tt.reserved {
			t.Errorf("reservedTopic(%q) reserved = %v, want %v", tt.topic, got, tt.reserved)
		}
	}
}

// FuzzTopicChecks: the checks never panic, a valid topic passes MQTT's
// rules, and a reserved topic starts with $.
func FuzzTopicChecks(f *testing.F) {
	for _, s := range []string{"farm/1", "$aws/things/a/shadow/name/b/update/delta", "$aws/rules/r/x", "$SYS/x", "$aws/events"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		if checkTopic(topic) == nil && (topic == "" || strings.ContainsAny(topic, "+#\x00")) {
			t.Fatalf("checkTopic(%q) passed", topic)
		}
		if reservedTopic(topic) != "" && topic[0] != '$' {
			t.Fatalf("reservedTopic(%q)", topic)
		}
		_ = checkClientID(topic)
	})
}
