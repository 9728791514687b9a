package replay

import (
	"testing"
	"unicode/utf8"

	"github.com/iotpipe/iotpipe/rulesql"
)

func TestTopicMatches(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"#", "$aws/events/presence/connected/x", false},
		{"+/x", "$sys/x", false},
		{"$aws/events/#", "$aws/events/presence/connected/x", true},
		{"a/+/c", "a//c", true},
		{"/a", "/a", true},
		{"/a", "a", false},
		{"a/b/c", "a/b", false},
	}
	for _, tt := range tests {
		if got := topicMatches(tt.filter, tt.topic); got != tt.want {
			t.Errorf("topicMatches(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

// FuzzTopicMatches checks the matcher against the rules' router: a
// selection by topic keeps exactly the events a rule FROM that filter
// sees.
func FuzzTopicMatches(f *testing.F) {
	f.Add("a/+/#", "a/b/c")
	f.Add("#", "$x/y")
	f.Add("a/#", "a")
	f.Fuzz(func(t *testing.T, filter, topic string) {
		if checkFilter(filter) != nil || filter == "" {
			return
		}
		if !utf8.ValidString(topic) {
			return // the MQTT front refuses such topics: none is in the log
		}
		rules, err := rulesql.Compile("SELECT * FROM '" + filter + "'")
		if err != nil {
			return // a filter the rule language refuses (a quote, ...)
		}
		set, err := rulesql.NewSet(rules)
		if err != nil {
			t.Fatal(err)
		}
		if want, got := len(set.Match(topic)) == 1, topicMatches(filter, topic); got != want {
			t.Errorf("topicMatches(%q, %q) = %v, the router says %v", filter, topic, got, want)
		}
	})
}

func TestCheckFilter(t *testing.T) {
	for _, ok := range []string{"", "a", "a/+/b", "#", "a/#", "+"} {
		if err := checkFilter(ok); err != nil {
			t.Errorf("checkFilter(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"a/#/b", "a+", "a/b#", "#/a", "\xff"} {
		if err := checkFilter(bad); err == nil {
			t.Errorf("checkFilter(%q) accepted", bad)
		}
	}
}
