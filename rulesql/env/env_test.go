package env

import (
	"errors"
	"testing"
)

// Reset leaves nothing of the evaluation before: no input, document,
// store, slot values, aggregates or error; the spaces stay for reuse.
func TestResetForgetsTheLastEvaluation(t *testing.T) {
	old := &Input{Payload: "old"}
	c := &Ctx{In: old, Doc: "nested", Rule: "r1", Aggs: []any{1}, Err: errors.New("failed"), Buf: []byte("key")}
	c.UseSlots(2)
	c.Slots[0], c.Slots[1] = "a", "b"
	args := c.PushArgs(3)
	args[0] = "x"
	slots := c.Slots[:2]

	in := &Input{Payload: map[string]any{"v": 1}}
	c.Reset(in, nil, "r2")
	if c.In != in || c.Rule != "r2" || c.St != nil || c.Aggs != nil || c.Err != nil {
		t.Errorf("after Reset: in %v, rule %q, st %v, aggs %v, err %v", c.In, c.Rule, c.St, c.Aggs, c.Err)
	}
	if m, ok := c.Doc.(map[string]any); !ok || m["v"] != 1 {
		t.Errorf("Doc %v, want the payload", c.Doc)
	}
	if len(c.Slots) != 0 || slots[0] != nil || slots[1] != nil || len(c.Buf) != 0 || len(c.Args) != 0 {
		t.Errorf("slots %d (old values %v), buf %q, args %d: want empty", len(c.Slots), slots, c.Buf, len(c.Args))
	}
	c.Reset(nil, nil, "")
	if c.In != nil || c.Doc != nil {
		t.Errorf("Reset(nil): in %v, doc %v", c.In, c.Doc)
	}
}

// Arguments pushed above others leave them as they were, also when the
// stack grows under them.
func TestArgsNest(t *testing.T) {
	var c Ctx
	outer := c.PushArgs(2)
	outer[0] = "o0"
	inner := c.PushArgs(5)
	for i := range inner {
		inner[i] = i
	}
	outer[1] = "o1"
	c.PopArgs(inner)
	if len(c.Args) != 2 || outer[0] != "o0" || outer[1] != "o1" {
		t.Errorf("after the inner pop: stack %d, outer %v", len(c.Args), outer)
	}
	c.PopArgs(outer)
	if len(c.Args) != 0 || outer[0] != nil {
		t.Errorf("after the outer pop: stack %d, outer %v", len(c.Args), outer)
	}
}

// A kept level is read back only for the topic it was kept for.
func TestLevelKeptForItsTopic(t *testing.T) {
	in := &Input{Topic: "a/b/c"}
	if _, ok := in.Level(2); ok {
		t.Fatal("a level read back before it was kept")
	}
	in.KeepLevel(2, "b")
	in.KeepLevel(9, "past the fourth")
	if v, ok := in.Level(2); !ok || v != "b" {
		t.Errorf("level 2: %v, %t; want b", v, ok)
	}
	if _, ok := in.Level(9); ok {
		t.Error("level 9 was kept")
	}
	in.Topic = "a/x/c"
	if v, ok := in.Level(2); ok {
		t.Errorf("level 2 of another topic: %v", v)
	}
	in.KeepLevel(3, "c")
	if _, ok := in.Level(2); ok {
		t.Error("a level of the old topic survived a keep for the new one")
	}
}
