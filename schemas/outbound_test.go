package schemas

import (
	"strings"
	"testing"
)

func TestParseReply(t *testing.T) {
	tests := []struct {
		topic, thing, id string
		ok               bool
	}{
		{"cmd/gh-1/0/7/shade/0/reply", "gh-1", "0/7/shade/0", true},
		{"cmd/gh-1/x/reply", "gh-1", "x", true},
		{"cmd/gh-1/reply", "", "", false},
		{"cmd/gh-1/0/7/shade/0", "", "", false},
		{"cmd//0/7/shade/0/reply", "", "", false},
		{"cmd/gh-1//reply", "", "", false},
		{"greenhouse/gh-1/reply", "", "", false},
		{"cmd/reply", "", "", false},
		{"", "", "", false},
	}
	for _, tt := range tests {
		thing, id, ok := ParseReply(tt.topic)
		if thing != tt.thing || id != tt.id || ok != tt.ok {
			t.Errorf("ParseReply(%q) = %q %q %v, want %q %q %v", tt.topic, thing, id, ok, tt.thing, tt.id, tt.ok)
		}
	}
}

// ParseReply accepts exactly the topics ReplyTopic makes: what it reads
// makes the topic again, and a thing without "/" and an id read back.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"cmd/gh-1/0/7/shade/0/reply", "cmd/a/b/reply", "cmd//reply", "cmd/a/reply", "x/cmd/a/b/reply", "cmd/a/b/reply/reply"} {
		f.Add(s, "gh-1", "0/7/r/0")
	}
	f.Fuzz(func(t *testing.T, topic, thing, id string) {
		if th, i, ok := ParseReply(topic); ok {
			if th == "" || i == "" || strings.Contains(th, "/") || ReplyTopic(th, i) != topic {
				t.Fatalf("ParseReply(%q) = %q %q", topic, th, i)
			}
		}
		if thing == "" || id == "" || strings.Contains(thing, "/") {
			return
		}
		if th, i, ok := ParseReply(ReplyTopic(thing, id)); !ok || th != thing || i != id {
			t.Fatalf("ParseReply(ReplyTopic(%q, %q)) = %q %q %v", thing, id, th, i, ok)
		}
	})
}
