package funcs

import (
	"math"
	"math/rand/v2"

	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

func float1(f func(float64) float64) Impl {
	return func(_ *env.Ctx, a []any) any {
		x, ok := value.ToFloat(a[0])
		if !ok {
			return value.Undefined
		}
		return value.Float(f(x))
	}
}

func float2(f func(x, y float64) float64) Impl {
	return func(_ *env.Ctx, a []any) any {
		x, ok1 := value.ToFloat(a[0])
		y, ok2 := value.ToFloat(a[1])
		if !ok1 || !ok2 {
			return value.Undefined
		}
		return value.Float(f(x, y))
	}
}

// toInt rounds a float result to an Int (Undefined when it cannot be one).
func toInt(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 9.2e18 {
		return value.Undefined
	}
	return int64(f)
}

// intRound applies f to Decimals and returns an Int; Ints pass unchanged.
func intRound(f func(float64) float64) Impl {
	return func(_ *env.Ctx, a []any) any {
		n, ok := value.ToNum(a[0])
		if !ok {
			return value.Undefined
		}
		if n.IsInt {
			return n.I
		}
		return toInt(f(n.F))
	}
}

func int2(f func(x, y int64) int64) Impl {
	return func(_ *env.Ctx, a []any) any {
		x, ok1 := intArg(a[0])
		y, ok2 := intArg(a[1])
		if !ok1 || !ok2 {
			return value.Undefined
		}
		return f(x, y)
	}
}

// intArg accepts Ints and Strings holding an Int (bitwise functions).
func intArg(v any) (int64, bool) {
	n, ok := value.ToNum(v)
	if !ok || !n.IsInt {
		return 0, false
	}
	return n.I, true
}

func mathFuncs() []*Func {
	return []*Func{
		{Name: "abs", Min: 1, Max: 1, Doc: "absolute value", Example: "abs(-5) = 5",
			Impl: func(_ *env.Ctx, a []any) any {
				n, ok := value.ToNum(a[0])
				if !ok {
					return value.Undefined
				}
				if n.IsInt {
					if n.I < 0 {
						return -n.I
					}
					return n.I
				}
				return math.Abs(n.F)
			}},
		{Name: "acos", Min: 1, Max: 1, Doc: "inverse cosine in radians", Example: "acos(0) = 1.5707963267948966", Impl: float1(math.Acos)},
		{Name: "asin", Min: 1, Max: 1, Doc: "inverse sine in radians", Example: "asin(0) = 0", Impl: float1(math.Asin)},
		{Name: "atan", Min: 1, Max: 1, Doc: "inverse tangent in radians", Example: "atan(0) = 0", Impl: float1(math.Atan)},
		{Name: "atan2", Min: 2, Max: 2, Doc: "angle of the point (x, y) given as atan2(y, x)", Example: "atan2(1, 0) = 1.5707963267948966", Impl: float2(math.Atan2)},
		{Name: "ceil", Min: 1, Max: 1, Doc: "round up to an Int", Example: "ceil(1.2) = 2", Impl: intRound(math.Ceil)},
		{Name: "cos", Min: 1, Max: 1, Doc: "cosine", Example: "cos(0) = 1", Impl: float1(math.Cos)},
		{Name: "cosh", Min: 1, Max: 1, Doc: "hyperbolic cosine", Example: "cosh(0) = 1", Impl: float1(math.Cosh)},
		{Name: "exp", Min: 1, Max: 1, Doc: "e raised to the argument", Example: "exp(1) = 2.718281828459045", Impl: float1(math.Exp)},
		{Name: "floor", Min: 1, Max: 1, Doc: "round down to an Int", Example: "floor(1.8) = 1", Impl: intRound(math.Floor)},
		{Name: "ln", Min: 1, Max: 1, Doc: "natural logarithm", Example: "ln(e) ≈ 1", Impl: float1(math.Log)},
		{Name: "log", Min: 1, Max: 1, Doc: "base-10 logarithm", Example: "log(100) = 2", Impl: float1(math.Log10)},
		{Name: "mod", Min: 2, Max: 2, Doc: "remainder of the division (sign of the dividend)", Example: "mod(8, 3) = 2",
			Impl: func(_ *env.Ctx, a []any) any { return value.Arith(value.OpMod, a[0], a[1]) }},
		{Name: "nanvl", Min: 2, Max: 2, Doc: "the first argument unless it is NaN or not a number, else the second", Example: "nanvl(8, 3) = 8",
			Impl: func(_ *env.Ctx, a []any) any {
				if s, ok := a[0].(string); ok && (s == "NaN" || s == "nan") {
					return a[1]
				}
				if f, ok := value.ToFloat(a[0]); ok && !math.IsNaN(f) {
					if _, isStr := a[0].(string); isStr {
						n, _ := value.ToNum(a[0])
						return n.Value()
					}
					return a[0]
				}
				return a[1]
			}},
		{Name: "power", Min: 2, Max: 2, Doc: "first argument raised to the second", Example: "power(2, 3) = 8", Impl: float2(math.Pow)},
		{Name: "rand", Min: 0, Max: 0, Volatile: true, Doc: "pseudo-random Decimal in [0, 1)", Example: "rand() = 0.8231909191640052",
			Impl: func(_ *env.Ctx, _ []any) any { return rand.Float64() }},
		{Name: "remainder", Min: 2, Max: 2, Doc: "remainder of the division", Example: "remainder(8, 3) = 2",
			Impl: func(_ *env.Ctx, a []any) any { return value.Arith(value.OpMod, a[0], a[1]) }},
		{Name: "round", Min: 1, Max: 1, Doc: "round to the nearest Int (halves round up, as in AWS)", Example: "round(1.5) = 2; round(-2.5) = -2", Impl: intRound(func(f float64) float64 { return math.Floor(f + 0.5) })},
		{Name: "sign", Min: 1, Max: 1, Doc: "-1, 0 or 1 by the sign of the argument", Example: "sign(-7) = -1",
			Impl: func(_ *env.Ctx, a []any) any {
				f, ok := value.ToFloat(a[0])
				if !ok || math.IsNaN(f) {
					return value.Undefined
				}
				switch {
				case f > 0:
					return int64(1)
				case f < 0:
					return int64(-1)
				}
				return int64(0)
			}},
		{Name: "sin", Min: 1, Max: 1, Doc: "sine", Example: "sin(0) = 0", Impl: float1(math.Sin)},
		{Name: "sinh", Min: 1, Max: 1, Doc: "hyperbolic sine", Example: "sinh(0) = 0", Impl: float1(math.Sinh)},
		{Name: "sqrt", Min: 1, Max: 1, Doc: "square root", Example: "sqrt(9) = 3", Impl: float1(math.Sqrt)},
		{Name: "tan", Min: 1, Max: 1, Doc: "tangent", Example: "tan(0) = 0", Impl: float1(math.Tan)},
		{Name: "tanh", Min: 1, Max: 1, Doc: "hyperbolic tangent", Example: "tanh(0) = 0", Impl: float1(math.Tanh)},
		{Name: "trunc", Min: 2, Max: 2, Doc: "truncate to the given number of decimal places", Example: "trunc(2.3456, 2) = 2.34",
			Impl: func(_ *env.Ctx, a []any) any {
				n, ok := value.ToNum(a[0])
				d, ok2 := value.ToInt(a[1])
				if !ok || !ok2 {
					return value.Undefined
				}
				if n.IsInt {
					return n.I
				}
				if d <= 0 {
					return toInt(math.Trunc(n.F))
				}
				if d > 15 {
					return n.F
				}
				p := math.Pow(10, float64(d))
				return value.Float(math.Trunc(n.F*p) / p)
			}},
		{Name: "bitand", Min: 2, Max: 2, Doc: "bitwise AND of two Ints", Example: "bitand(13, 5) = 5", Impl: int2(func(x, y int64) int64 { return x & y })},
		{Name: "bitor", Min: 2, Max: 2, Doc: "bitwise OR of two Ints", Example: "bitor(8, 5) = 13", Impl: int2(func(x, y int64) int64 { return x | y })},
		{Name: "bitxor", Min: 2, Max: 2, Doc: "bitwise XOR of two Ints", Example: "bitxor(13, 5) = 8", Impl: int2(func(x, y int64) int64 { return x ^ y })},
		{Name: "bitnot", Min: 1, Max: 1, Doc: "bitwise NOT of an Int", Example: "bitnot(13) = -14",
			Impl: func(_ *env.Ctx, a []any) any {
				x, ok := intArg(a[0])
				if !ok {
					return value.Undefined
				}
				return ^x
			}},
	}
}
