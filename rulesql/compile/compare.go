package compile

import (
	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

// cmpConst specialises "expr op number" for the common WHERE shape.
func cmpConst(op value.Op, l Fn, k any) Fn {
	n, ok := k.(int64)
	var kf float64
	switch t := k.(type) {
	case int64:
		kf = float64(t)
	case float64:
		kf = t
	default:
		return nil
	}
	slow := func(v any) any { return value.Compare(op, v, k) }
	switch op {
	case value.OpGt:
		return func(c *env.Ctx) any {
			switch x := l(c).(type) {
			case float64:
				return x > kf
			case int64:
				if ok {
					return x > n
				}
				return float64(x) > kf
			default:
				return slow(x)
			}
		}
	case value.OpGe:
		return func(c *env.Ctx) any {
			switch x := l(c).(type) {
			case float64:
				return x >= kf
			case int64:
				if ok {
					return x >= n
				}
				return float64(x) >= kf
			default:
				return slow(x)
			}
		}
	case value.OpLt:
		return func(c *env.Ctx) any {
			switch x := l(c).(type) {
			case float64:
				return x < kf
			case int64:
				if ok {
					return x < n
				}
				return float64(x) < kf
			default:
				return slow(x)
			}
		}
	case value.OpLe:
		return func(c *env.Ctx) any {
			switch x := l(c).(type) {
			case float64:
				return x <= kf
			case int64:
				if ok {
					return x <= n
				}
				return float64(x) <= kf
			default:
				return slow(x)
			}
		}
	}
	return nil
}

// cmpAttrConst specialises "attribute op number", the most common WHERE
// term, into one closure: one map lookup, one type switch.
func cmpAttrConst(op value.Op, name string, k any) Fn {
	var kf float64
	switch t := k.(type) {
	case int64:
		if t > 1<<53 || t < -(1<<53) {
			return nil // not exact as a float64: use the general path
		}
		kf = float64(t)
	case float64:
		kf = t
	default:
		return nil
	}
	slow := func(v any) any { return value.Compare(op, v, k) }
	get := func(c *env.Ctx) (any, bool) {
		if m, ok := c.Doc.(map[string]any); ok {
			v, ok := m[name]
			return v, ok
		}
		return nil, false
	}
	switch op {
	case value.OpGt:
		return func(c *env.Ctx) any {
			v, ok := get(c)
			if !ok {
				return value.Undefined
			}
			if x, ok := v.(float64); ok {
				return x > kf
			}
			if x, ok := v.(int64); ok {
				return float64(x) > kf
			}
			return slow(v)
		}
	case value.OpGe:
		return func(c *env.Ctx) any {
			v, ok := get(c)
			if !ok {
				return value.Undefined
			}
			if x, ok := v.(float64); ok {
				return x >= kf
			}
			if x, ok := v.(int64); ok {
				return float64(x) >= kf
			}
			return slow(v)
		}
	case value.OpLt:
		return func(c *env.Ctx) any {
			v, ok := get(c)
			if !ok {
				return value.Undefined
			}
			if x, ok := v.(float64); ok {
				return x < kf
			}
			if x, ok := v.(int64); ok {
				return float64(x) < kf
			}
			return slow(v)
		}
	case value.OpLe:
		return func(c *env.Ctx) any {
			v, ok := get(c)
			if !ok {
				return value.Undefined
			}
			if x, ok := v.(float64); ok {
				return x <= kf
			}
			if x, ok := v.(int64); ok {
				return float64(x) <= kf
			}
			return slow(v)
		}
	}
	return nil
}
