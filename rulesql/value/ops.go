package value

import (
	"math"

	"github.com/iotpipe/iotpipe/schemas/payload"
)

// Op is a binary operator.
type Op uint8

// The binary operators.
const (
	OpAdd Op = iota
	OpSub
	OpMul
	OpDiv
	OpMod
	OpEq
	OpNe
	OpLt
	OpLe
	OpGt
	OpGe
	OpAnd
	OpOr
)

var opNames = [...]string{"+", "-", "*", "/", "%", "=", "<>", "<", "<=", ">", ">=", "AND", "OR"}

// String returns the operator as written in SQL.
func (o Op) String() string { return opNames[o] }

// Binary applies a binary operator with AWS semantics; any Undefined
// operand gives Undefined.
func Binary(op Op, a, b any) any {
	switch op {
	case OpAnd:
		return And(a, b)
	case OpOr:
		return Or(a, b)
	case OpEq:
		return Equal(a, b)
	case OpNe:
		r := Equal(a, b)
		if x, ok := r.(bool); ok {
			return !x
		}
		return r
	case OpLt, OpLe, OpGt, OpGe:
		return Compare(op, a, b)
	}
	return Arith(op, a, b)
}

// And is the AND operator: Booleans (or "true"/"false" Strings), else
// Undefined.
func And(a, b any) any {
	x, ok1 := ToBool(a)
	y, ok2 := ToBool(b)
	if !ok1 || !ok2 {
		return Undefined
	}
	return x && y
}

// Or is the OR operator: Booleans (or "true"/"false" Strings), else
// Undefined.
func Or(a, b any) any {
	x, ok1 := ToBool(a)
	y, ok2 := ToBool(b)
	if !ok1 || !ok2 {
		return Undefined
	}
	return x || y
}

// Not is the NOT operator.
func Not(a any) any {
	x, ok := ToBool(a)
	if !ok {
		return Undefined
	}
	return !x
}

// Neg is unary minus.
func Neg(a any) any {
	n, ok := ToNum(a)
	if !ok {
		return Undefined
	}
	if n.IsInt {
		return -n.I
	}
	return -n.F
}

// Equal is the = operator: Undefined if either side is Undefined; numbers
// (and Strings that are numbers, against a number) compare by value;
// values of the same type compare deeply; different types are unequal.
func Equal(a, b any) any {
	if IsUndefined(a) || IsUndefined(b) {
		return Undefined
	}
	return DeepEqual(a, b)
}

// DeepEqual compares two defined values by AWS's = rules.
func DeepEqual(a, b any) bool {
	ka, kb := KindOf(a), KindOf(b)
	num := func(k Kind) bool { return k == KindInt || k == KindDecimal }
	if num(ka) || num(kb) {
		if (num(ka) || ka == KindString) && (num(kb) || kb == KindString) {
			x, ok1 := ToNum(a)
			y, ok2 := ToNum(b)
			if !ok1 || !ok2 {
				return false
			}
			if x.IsInt && y.IsInt {
				return x.I == y.I
			}
			return x.Float() == y.Float()
		}
		return false
	}
	if ka != kb {
		return false
	}
	switch x := a.(type) {
	case nil:
		return true
	case bool:
		return x == b.(bool)
	case string:
		return x == b.(string)
	case []byte:
		return string(x) == string(b.([]byte))
	case []any:
		y := b.([]any)
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if !DeepEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y := b.(map[string]any)
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !DeepEqual(v, w) {
				return false
			}
		}
		return true
	}
	return false
}

// Compare applies <, <=, > or >=: both operands are converted to numbers;
// two Strings that are not numbers compare lexically; anything else is
// Undefined.
func Compare(op Op, a, b any) any {
	if x, ok := a.(float64); ok {
		if y, ok := b.(float64); ok {
			return cmpFloat(op, x, y)
		}
	}
	x, ok1 := ToNum(a)
	y, ok2 := ToNum(b)
	if !ok1 || !ok2 {
		sa, oka := a.(string)
		sb, okb := b.(string)
		if oka && okb {
			return cmpInt(op, cmpStrings(sa, sb))
		}
		return Undefined
	}
	if x.IsInt && y.IsInt {
		c := 0
		if x.I < y.I {
			c = -1
		} else if x.I > y.I {
			c = 1
		}
		return cmpInt(op, c)
	}
	return cmpFloat(op, x.Float(), y.Float())
}

func cmpStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpFloat(op Op, x, y float64) any {
	switch op {
	case OpLt:
		return x < y
	case OpLe:
		return x <= y
	case OpGt:
		return x > y
	case OpGe:
		return x >= y
	}
	return Undefined
}

func cmpInt(op Op, c int) any {
	switch op {
	case OpLt:
		return c < 0
	case OpLe:
		return c <= 0
	case OpGt:
		return c > 0
	case OpGe:
		return c >= 0
	}
	return Undefined
}

// Arith applies + - * / %: Int op Int is an Int (integer division for /,
// Undefined on division by zero), otherwise Decimal; Strings that are
// numbers are converted; anything else is Undefined.
func Arith(op Op, a, b any) any {
	x, ok1 := ToNum(a)
	y, ok2 := ToNum(b)
	if !ok1 || !ok2 {
		return Undefined
	}
	if x.IsInt && y.IsInt {
		switch op {
		case OpAdd:
			return x.I + y.I
		case OpSub:
			return x.I - y.I
		case OpMul:
			return x.I * y.I
		case OpDiv:
			if y.I == 0 {
				return Undefined
			}
			return x.I / y.I
		case OpMod:
			if y.I == 0 {
				return Undefined
			}
			return x.I % y.I
		}
		return Undefined
	}
	f, g := x.Float(), y.Float()
	var r float64
	switch op {
	case OpAdd:
		r = f + g
	case OpSub:
		r = f - g
	case OpMul:
		r = f * g
	case OpDiv:
		if g == 0 {
			return Undefined
		}
		r = f / g
	case OpMod:
		if g == 0 {
			return Undefined
		}
		r = math.Mod(f, g)
	default:
		return Undefined
	}
	return Float(r)
}

// Float boxes a Decimal result; NaN and infinities (not representable in
// JSON) are Undefined.
func Float(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return Undefined
	}
	return f
}

// Clean returns v with every Undefined removed from objects and arrays
// (Undefined alone stays Undefined). It copies only what it changes.
func Clean(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			c := Clean(x)
			if IsUndefined(c) {
				delete(t, k)
			} else {
				t[k] = c
			}
		}
		return t
	case []any:
		out := t[:0:0]
		changed := false
		for _, x := range t {
			c := Clean(x)
			if IsUndefined(c) {
				changed = true
				continue
			}
			out = append(out, c)
		}
		if !changed {
			return t
		}
		return out
	}
	return v
}

// MarshalJSON encodes v as compact JSON with sorted keys, leaving out
// Undefined values.
func MarshalJSON(v any) ([]byte, error) {
	return payload.Encode(Clean(v))
}
