package policy

import (
	"fmt"
	"strings"
	"testing"
)

// TestCacheBounded: a Decider remembers at most CacheSize resources per
// action, and none with the cache off.
func TestCacheBounded(t *testing.T) {
	p, err := Parse("p", []byte(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":["iot:Publish","iot:Receive"],"Resource":"topic/a/*"}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 1, 5, DefaultCacheSize} {
		d := Compile([]*Policy{p}, Context{ClientID: "c"}, CacheSize(size))
		for i := range 3 * DefaultCacheSize {
			topic := fmt.Sprintf("a/%d", i)
			if !d.AllowPublish(topic, false) || d.AllowPublish("b/"+topic, false) {
				t.Fatalf("size %d: wrong answer for %s", size, topic)
			}
			if n := len(d.slots[slotPublish].cache); n > size {
				t.Fatalf("size %d: %d entries cached", size, n)
			}
		}
		if n := len(d.slots[slotPublish].cache); n != size {
			t.Errorf("size %d: %d entries cached after many resources, want the cache full", size, n)
		}
		if n := len(d.slots[slotReceive].cache); n != 0 {
			t.Errorf("size %d: Receive cached %d entries without being asked", size, n)
		}
	}
}

// TestLongNamesNotCached: a resource name over 256 bytes is decided but not
// remembered.
func TestLongNamesNotCached(t *testing.T) {
	p, err := Parse("p", []byte(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"iot:Publish","Resource":"topic/a/*"}}`))
	if err != nil {
		t.Fatal(err)
	}
	d := Compile([]*Policy{p}, Context{ClientID: "c"})
	long := "a/" + strings.Repeat("x", maxCachedName)
	for range 2 {
		if !d.AllowPublish(long, false) || d.AllowPublish("b"+long, false) {
			t.Fatal("wrong answer for a long topic")
		}
	}
	if n := len(d.slots[slotPublish].cache); n != 0 {
		t.Errorf("%d long names cached", n)
	}
	if !d.AllowPublish("a/"+strings.Repeat("x", maxCachedName-2), false) || len(d.slots[slotPublish].cache) != 1 {
		t.Errorf("a 256-byte name is not cached")
	}
}
