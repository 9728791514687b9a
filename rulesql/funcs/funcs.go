// Package funcs is the AWS IoT SQL function catalog: every function that
// does not call an AWS service, with AWS's argument conversions (numbers
// from numeric Strings; Undefined for arguments a function cannot
// handle).
//
// Functions that need the event (topic, clientid, ...) read it from the
// env.Ctx they receive. Stateful functions (pewma) and aggregates are not
// here: the compiler builds them, since they need a call site.
package funcs

import (
	"strings"

	"github.com/iotpipe/iotpipe/rulesql/env"
)

// Impl evaluates a function over its evaluated arguments. args is the
// caller's (its context's argument stack, env.Ctx.PushArgs): an Impl
// reads it during the call and never keeps or returns it.
type Impl func(c *env.Ctx, args []any) any

// Func describes one catalog function.
type Func struct {
	// Name is the canonical (documented) spelling; lookup ignores case.
	Name string
	// Min and Max bound the argument count; Max < 0 means no bound.
	Min, Max int
	// Impl evaluates the function.
	Impl Impl
	// Prepare, when set, is called once at compile time with the
	// arguments that are constants (nil entries for the others; use
	// IsConst to tell a constant null). It returns a specialised Impl (nil
	// to keep Impl) or an error for an argument that can never work, such
	// as a bad regular expression.
	Prepare func(consts []Const) (Impl, error)
	// Volatile is set for functions whose result depends on the event or
	// on chance, so the compiler must not fold them.
	Volatile bool
	// Doc is a one-line description and Example an example call with its
	// result, for the README.
	Doc, Example string
}

// Const is a compile-time argument: OK reports whether it is constant.
type Const struct {
	Value any
	OK    bool
}

// Lookup returns the function named name (any case).
func Lookup(name string) (*Func, bool) {
	for _, group := range [][]*Func{mathFuncs(), stringFuncs(), hashFuncs(), contextFuncs(), convFuncs()} {
		for _, f := range group {
			if strings.EqualFold(f.Name, name) {
				return f, true
			}
		}
	}
	return nil, false
}

// All returns the whole catalog, in documentation order.
func All() []*Func {
	var out []*Func
	for _, group := range [][]*Func{mathFuncs(), stringFuncs(), hashFuncs(), contextFuncs(), convFuncs()} {
		out = append(out, group...)
	}
	return out
}
