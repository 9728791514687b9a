package shadow

import (
	"time"

	"github.com/iotpipe/iotpipe/schemas/payload"
)

// StateReader reads committed processor state by processor name and key
// (processors.Runner and processors.Harness do).
type StateReader interface {
	Read(processor string, key []byte) ([]byte, bool, error)
}

// View answers rulesql's get_thing_shadow() from the shadow processor's
// committed state: the document a get request would return (state with
// delta, metadata, version, timestamp), decoded.
type View struct {
	r   StateReader
	now func() time.Time
}

// NewView returns a View over r.
func NewView(r StateReader) *View { return &View{r: r, now: time.Now} }

// ThingShadow implements rulesql.ShadowReader.
func (v *View) ThingShadow(thing, shadowName string) (any, bool, error) {
	get := func(key []byte) ([]byte, bool, error) { return v.r.Read(Name, key) }
	body, rej, err := ReadDocument(get, thing, shadowName, v.now())
	if err != nil || rej != nil {
		return nil, false, err
	}
	doc, err := payload.Decode(body)
	if err != nil {
		return nil, false, err
	}
	return doc, true, nil
}
