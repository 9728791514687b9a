package policy

import (
	"fmt"
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
