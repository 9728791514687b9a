package funcs

import (
	"fmt"
	"math"
	"strings"

	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

func convFuncs() []*Func {
	return []*Func{
		{Name: "isNull", Min: 1, Max: 1, Doc: "whether the value is Null", Example: "isNull(null) = true",
			Impl: func(_ *env.Ctx, a []any) any { return a[0] == nil }},
		{Name: "isUndefined", Min: 1, Max: 1, Doc: "whether the value is Undefined", Example: "isUndefined(missing.attr) = true",
			Impl: func(_ *env.Ctx, a []any) any { return value.IsUndefined(a[0]) }},
	}
}

// CastTypes lists the type names cast() accepts (lower case).
func CastTypes() []string {
	return []string{"int", "integer", "decimal", "double", "float", "string", "varchar", "bool", "boolean"}
}

// CastTarget normalises a cast() type name, or fails.
func CastTarget(name string) (string, error) {
	switch strings.ToLower(name) {
	case "int", "integer", "bigint":
		return "int", nil
	case "decimal", "double", "float", "real":
		return "decimal", nil
	case "string", "varchar", "text":
		return "string", nil
	case "bool", "boolean":
		return "bool", nil
	}
	return "", fmt.Errorf("unknown cast type %s (use Int, Decimal, String or Boolean)", name)
}

// Cast converts v to the target returned by CastTarget, as AWS's cast():
// Booleans become 1/0 as numbers, numbers become Booleans by being
// non-zero, Strings are parsed.
func Cast(v any, target string) any {
	if value.IsUndefined(v) || v == nil {
		return v
	}
	switch target {
	case "int":
		switch t := v.(type) {
		case bool:
			if t {
				return int64(1)
			}
			return int64(0)
		case []any, map[string]any:
			return value.Undefined
		}
		n, ok := value.ToNum(v)
		if !ok {
			return value.Undefined
		}
		if n.IsInt {
			return n.I
		}
		return toInt(math.Floor(n.F))
	case "decimal":
		switch t := v.(type) {
		case bool:
			if t {
				return 1.0
			}
			return 0.0
		case []any, map[string]any:
			return value.Undefined
		}
		f, ok := value.ToFloat(v)
		if !ok {
			return value.Undefined
		}
		return value.Float(f)
	case "string":
		s, ok := value.ToString(v)
		if !ok {
			return value.Undefined
		}
		return s
	case "bool":
		switch t := v.(type) {
		case bool:
			return t
		case string:
			b, ok := value.ToBool(t)
			if !ok {
				return value.Undefined
			}
			return b
		}
		n, ok := value.ToNum(v)
		if !ok {
			return value.Undefined
		}
		return n.Float() != 0
	}
	return value.Undefined
}
