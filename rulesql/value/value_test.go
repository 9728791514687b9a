package value

import (
	"math"
	"testing"
)

func TestBinary(t *testing.T) {
	u := Undefined
	tests := []struct {
		op   Op
		a, b any
		want any
	}{
		{OpAdd, int64(2), int64(3), int64(5)},
		{OpAdd, int64(2), 0.5, 2.5},
		{OpAdd, "2", int64(3), int64(5)},
		{OpAdd, "2.5", "1", 3.5},
		{OpAdd, "x", int64(1), u},
		{OpAdd, true, int64(1), u},
		{OpAdd, u, int64(1), u},
		{OpSub, int64(2), int64(5), int64(-3)},
		{OpMul, 1.5, int64(2), 3.0},
		{OpDiv, int64(7), int64(2), int64(3)},
		{OpDiv, 7.0, int64(2), 3.5},
		{OpDiv, int64(1), int64(0), u},
		{OpMod, int64(-7), int64(3), int64(-1)},
		{OpMod, 7.5, int64(2), 1.5},
		{OpEq, int64(5), 5.0, true},
		{OpEq, "5", int64(5), true},
		{OpEq, "a", "a", true},
		{OpEq, "a", int64(1), false},
		{OpEq, nil, nil, true},
		{OpEq, nil, false, false},
		{OpEq, []any{int64(1), "a"}, []any{1.0, "a"}, true},
		{OpEq, map[string]any{"k": int64(1)}, map[string]any{"k": int64(2)}, false},
		{OpEq, u, u, u},
		{OpNe, int64(1), true, true},
		{OpNe, u, int64(1), u},
		{OpLt, int64(1), 1.5, true},
		{OpGe, "10", int64(9), true},
		{OpLt, "abc", "abd", true},
		{OpGt, true, int64(1), u},
		{OpLe, nil, int64(1), u},
		{OpAnd, true, "TRUE", true},
		{OpAnd, true, int64(1), u},
		{OpOr, false, "false", false},
		{OpOr, "x", true, u},
	}
	for _, tt := range tests {
		if got := Binary(tt.op, tt.a, tt.b); !same(got, tt.want) {
			t.Errorf("%v %s %v = %#v, want %#v", tt.a, tt.op, tt.b, got, tt.want)
		}
	}
}

func same(a, b any) bool {
	if IsUndefined(a) || IsUndefined(b) {
		return IsUndefined(a) && IsUndefined(b)
	}
	if KindOf(a) != KindOf(b) {
		return false
	}
	return DeepEqual(a, b)
}

func TestUnary(t *testing.T) {
	if got := Neg("2"); got != int64(-2) {
		t.Errorf("-'2' = %v", got)
	}
	if got := Neg(1.5); got != -1.5 {
		t.Errorf("-1.5 = %v", got)
	}
	if !IsUndefined(Neg("x")) || !IsUndefined(Not(int64(1))) {
		t.Error("- 'x' or NOT 1 is not Undefined")
	}
	if Not("False") != true {
		t.Error("NOT 'False' is not true")
	}
}

func TestConversions(t *testing.T) {
	if n, ok := ToNum(" 42 "); !ok || !n.IsInt || n.I != 42 {
		t.Errorf("ToNum(' 42 ') = %+v %v", n, ok)
	}
	if _, ok := ToNum(""); ok {
		t.Error("empty string converted to a number")
	}
	if i, ok := ToInt(-3.9); !ok || i != -3 {
		t.Errorf("ToInt(-3.9) = %d %v", i, ok)
	}
	if _, ok := ToInt(math.NaN()); ok {
		t.Error("NaN converted to an Int")
	}
	for v, want := range map[any]string{int64(3): "3", 2.5: "2.5", 1e21: "1e+21", true: "true", "s": "s"} {
		if got, _ := ToString(v); got != want {
			t.Errorf("ToString(%v) = %q, want %q", v, got, want)
		}
	}
	if got := Text(map[string]any{"b": int64(1), "a": []any{nil}}); got != `{"a":[null],"b":1}` {
		t.Errorf("Text(object) = %s", got)
	}
	if Text(Undefined) != "" || Text(nil) != "null" {
		t.Error("Text of Undefined or null")
	}
	if !Truthy(true) || !Truthy("TRUE") || Truthy(int64(1)) || Truthy(Undefined) {
		t.Error("Truthy")
	}
	if !IsUndefined(Float(math.Inf(1))) {
		t.Error("Inf is not Undefined")
	}
}

func TestMarshalJSONDropsUndefined(t *testing.T) {
	b, err := MarshalJSON(map[string]any{"a": Undefined, "b": []any{int64(1), Undefined}, "c": map[string]any{"d": Undefined}})
	if err != nil || string(b) != `{"b":[1],"c":{}}` {
		t.Errorf("MarshalJSON = %s, %v", b, err)
	}
}
