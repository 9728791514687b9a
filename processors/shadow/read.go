package shadow

import (
	"time"

	"github.com/iotpipe/iotpipe/processors/shadow/document"
)

// Read returns the current shadow of thing (name "" for the classic
// shadow) from the processor's state, for readers outside the event path:
// the HTTP GET handler and rulesql's get_thing_shadow.
//
// get reads one key of the shadow processor's state in the partition
// that holds thing's events: the caller prefixes the key it is given with
// that partition's processor prefix ('p' | partition | "shadow" | 0x00,
// see processors/store.go) and reads Pebble. Key(thing, name) is the key
// asked for.
//
// ok is false when the shadow does not exist (never created, or
// deleted: then s still carries the version the next update continues
// from). ReadDocument gives the AWS GetThingShadow response body.
func Read(get func(key []byte) ([]byte, bool, error), thing, name string) (s document.Shadow, ok bool, err error) {
	b, found, err := get(Key(thing, name))
	if err != nil {
		return document.Shadow{Thing: thing, Name: name}, false, err
	}
	if !found {
		return document.Shadow{Thing: thing, Name: name}, false, nil
	}
	s, err = document.DecodeStored(b)
	if err != nil {
		return document.Shadow{Thing: thing, Name: name}, false, err
	}
	return s, s.Exists(), nil
}

// ReadDocument is Read followed by the AWS GetThingShadow answer at time
// now: the get/accepted document (state with delta, metadata, version,
// timestamp), or, for a shadow that does not exist, rej (404) with its
// error document as body. err reports a failed read.
func ReadDocument(get func(key []byte) ([]byte, bool, error), thing, name string, now time.Time) (body []byte, rej *document.Error, err error) {
	s, _, err := Read(get, thing, name)
	if err != nil {
		return nil, nil, err
	}
	body, rej = document.AppendGet(make([]byte, 0, 1024), &s, now.Unix(), document.Token{})
	if rej != nil {
		return document.AppendError(nil, rej, now.Unix(), "", false), rej, nil
	}
	return body, nil, nil
}
