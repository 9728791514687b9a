package shadow

import "strings"

// Op is a shadow request operation.
type Op string

// Shadow request operations (the last level of a request topic).
const (
	OpUpdate Op = "update"
	OpGet    Op = "get"
	OpDelete Op = "delete"
)

// Request is a shadow request topic taken apart.
type Request struct {
	// Thing is the thing name, Name the shadow name ("" for the classic
	// shadow).
	Thing, Name string
	// Op is the requested operation.
	Op Op
	// Prefix is the topic up to and including the "/" before the
	// operation, e.g. "$aws/things/lamp/shadow/"; response topics are
	// Prefix + "update/accepted" and so on.
	Prefix string
}

const topicRoot = "$aws/things/"

// ParseTopic recognizes the request topics
//
//	$aws/things/{thing}/shadow/{update|get|delete}
//	$aws/things/{thing}/shadow/name/{shadowName}/{update|get|delete}
//
// and reports false for every other topic (response topics included).
func ParseTopic(topic string) (Request, bool) {
	rest, ok := strings.CutPrefix(topic, topicRoot)
	if !ok {
		return Request{}, false
	}
	thing, rest, ok := strings.Cut(rest, "/")
	// (No NUL: the processor's own state keys start with one.)
	if !ok || thing == "" || strings.IndexByte(thing, 0) >= 0 {
		return Request{}, false
	}
	rest, ok = strings.CutPrefix(rest, "shadow/")
	if !ok {
		return Request{}, false
	}
	var name string
	if n, ok := strings.CutPrefix(rest, "name/"); ok {
		name, rest, ok = strings.Cut(n, "/")
		if !ok || name == "" || strings.IndexByte(name, 0) >= 0 {
			return Request{}, false
		}
	}
	var op Op
	switch rest {
	case "update":
		op = OpUpdate
	case "get":
		op = OpGet
	case "delete":
		op = OpDelete
	default:
		return Request{}, false
	}
	return Request{Thing: thing, Name: name, Op: op, Prefix: topic[:len(topic)-len(rest)]}, true
}

// Key returns the state key and shadows-changelog record key of a
// shadow: "thing" for the classic shadow, "thing/name" for a named one.
func Key(thing, name string) []byte {
	k := make([]byte, 0, len(thing)+1+len(name))
	k = append(k, thing...)
	if name != "" {
		k = append(k, '/')
		k = append(k, name...)
	}
	return k
}
