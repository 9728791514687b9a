// Package value is the AWS IoT SQL value model over the shared payload
// representation (schemas/payload): map[string]any (Object), []any
// (Array), string (String), bool (Boolean), nil (Null), int64 (Int),
// float64 (Decimal), plus Undefined, a distinct sentinel for "no value".
// It holds the conversion and operator rules of AWS IoT SQL 2016-03-23.
package value

import (
	"encoding/base64"
	"math"
	"strconv"
	"strings"
)

// UndefinedType is the type of Undefined; it has exactly one value.
type UndefinedType struct{}

// String returns "undefined".
func (UndefinedType) String() string { return "undefined" }

// Undefined is AWS IoT SQL's non-value: a missing attribute, a function
// called with arguments it cannot handle. It is left out of outputs.
var Undefined any = UndefinedType{}

// IsUndefined reports whether v is Undefined.
func IsUndefined(v any) bool {
	_, ok := v.(UndefinedType)
	return ok
}

// Kind is the AWS IoT SQL data type of a value.
type Kind uint8

// The AWS IoT SQL data types.
const (
	KindUndefined Kind = iota
	KindNull
	KindBool
	KindInt
	KindDecimal
	KindString
	KindArray
	KindObject
	KindBinary
)

var kindNames = [...]string{"Undefined", "Null", "Boolean", "Int", "Decimal", "String", "Array", "Object", "Binary"}

// String returns the AWS name of the kind.
func (k Kind) String() string { return kindNames[k] }

// KindOf returns the data type of v. Go ints and float32 are accepted as
// Int and Decimal so that values built by hand work too.
func KindOf(v any) Kind {
	switch v.(type) {
	case nil:
		return KindNull
	case bool:
		return KindBool
	case int64, int, int32:
		return KindInt
	case float64, float32:
		return KindDecimal
	case string:
		return KindString
	case []any:
		return KindArray
	case map[string]any:
		return KindObject
	case []byte:
		return KindBinary
	}
	return KindUndefined
}

// Num is a number: an Int or a Decimal.
type Num struct {
	I     int64
	F     float64
	IsInt bool
}

// Float returns the number as a float64.
func (n Num) Float() float64 {
	if n.IsInt {
		return float64(n.I)
	}
	return n.F
}

// Value boxes the number as int64 or float64.
func (n Num) Value() any {
	if n.IsInt {
		return n.I
	}
	return n.F
}

// ToNum converts v to a number by AWS's rules: Int and Decimal as they
// are, a String that parses as a number; anything else fails.
func ToNum(v any) (Num, bool) {
	switch t := v.(type) {
	case int64:
		return Num{I: t, IsInt: true}, true
	case float64:
		return Num{F: t}, true
	case int:
		return Num{I: int64(t), IsInt: true}, true
	case int32:
		return Num{I: int64(t), IsInt: true}, true
	case float32:
		return Num{F: float64(t)}, true
	case string:
		return ParseNum(t)
	}
	return Num{}, false
}

// ParseNum parses a string as a number (Int when it is an integer literal).
func ParseNum(s string) (Num, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Num{}, false
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return Num{I: i, IsInt: true}, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return Num{}, false
	}
	return Num{F: f}, true
}

// ToFloat converts v to a Decimal (see ToNum).
func ToFloat(v any) (float64, bool) {
	switch t := v.(type) {
	case float64:
		return t, true
	case int64:
		return float64(t), true
	}
	n, ok := ToNum(v)
	return n.Float(), ok
}

// ToInt converts v to an Int: Decimals are truncated toward zero and
// Strings are parsed as numbers first.
func ToInt(v any) (int64, bool) {
	if i, ok := v.(int64); ok {
		return i, true
	}
	n, ok := ToNum(v)
	if !ok {
		return 0, false
	}
	if n.IsInt {
		return n.I, true
	}
	if math.IsNaN(n.F) || math.IsInf(n.F, 0) {
		return 0, false
	}
	return int64(n.F), true
}

// ToBool converts v for the logical operators: a Boolean, or a String
// "true"/"false" in any case.
func ToBool(v any) (bool, bool) {
	switch t := v.(type) {
	case bool:
		return t, true
	case string:
		if strings.EqualFold(t, "true") {
			return true, true
		}
		if strings.EqualFold(t, "false") {
			return false, true
		}
	}
	return false, false
}

// ToString converts v to a String the way string functions do: Strings
// as they are, numbers and Booleans in their JSON form, Arrays and
// Objects as JSON; Null and Undefined fail.
func ToString(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case int64:
		return strconv.FormatInt(t, 10), true
	case float64:
		return FormatFloat(t), true
	case bool:
		return strconv.FormatBool(t), true
	case int:
		return strconv.Itoa(t), true
	case []byte:
		return string(t), true
	case []any, map[string]any:
		b, err := MarshalJSON(t)
		if err != nil {
			return "", false
		}
		return string(b), true
	}
	return "", false
}

// FormatFloat formats a Decimal as AWS prints it: whole numbers without
// a fraction, others in the shortest exact form.
func FormatFloat(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// Text renders v for a substitution template: Strings as they are,
// Undefined as the empty string, everything else as JSON.
func Text(v any) string {
	switch t := v.(type) {
	case UndefinedType:
		return ""
	case nil:
		return "null"
	case []byte:
		return base64.StdEncoding.EncodeToString(t)
	}
	s, _ := ToString(v)
	return s
}

// Truthy reports whether a WHERE condition value fires the rule: only
// Boolean true (or the String "true") does.
func Truthy(v any) bool {
	if b, ok := v.(bool); ok {
		return b
	}
	b, ok := ToBool(v)
	return ok && b
}
