package shadow

import (
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/schemas"
	"github.com/twmb/franz-go/pkg/kgo"
)

// outbox builds the records one request emits with few allocations: the
// records share one array, their headers another (each record's headers
// with room for the one tx.Emit adds, so Emit does not copy them), and
// the header values and keys one byte buffer. The records are the same,
// byte for byte, as schemas.Outbound.Record builds; they only share
// backing arrays, which nothing writes to once emitted.
type outbox struct {
	p    *Processor
	tx   *processors.Tx
	req  *Request
	recs []kgo.Record
	hdrs []kgo.RecordHeader
	buf  []byte
	// thing is req.Thing as bytes, shared by the outbound records' keys.
	thing []byte
}

// newOutbox returns an outbox with room for n records with hdrs headers
// in all (counting the one tx.Emit adds to each), and extra bytes of
// request ids beyond the response topics.
func (p *Processor) newOutbox(tx *processors.Tx, req *Request, n, hdrs, extra int) outbox {
	o := outbox{
		p: p, tx: tx, req: req,
		recs: make([]kgo.Record, 0, n),
		hdrs: make([]kgo.RecordHeader, 0, hdrs),
		// Each response topic is Prefix + a suffix of at most 16 bytes.
		buf: make([]byte, 0, n*(len(req.Prefix)+16)+len(req.Thing)+1+extra),
	}
	o.buf = append(o.buf, '0'+1)
	o.thing = o.bytes(req.Thing, "")
	return o
}

// bytes copies a+b into the buffer and returns it, capacity capped.
func (o *outbox) bytes(a, b string) []byte {
	n := len(a) + len(b)
	if len(o.buf)+n > cap(o.buf) {
		out := make([]byte, 0, n)
		return append(append(out, a...), b...)
	}
	start := len(o.buf)
	o.buf = append(append(o.buf, a...), b...)
	return o.buf[start:len(o.buf):len(o.buf)]
}

// record returns a zeroed record from the array.
func (o *outbox) record() *kgo.Record {
	if len(o.recs) == cap(o.recs) {
		return &kgo.Record{}
	}
	o.recs = o.recs[:len(o.recs)+1]
	return &o.recs[len(o.recs)-1]
}

// headers returns n headers with capacity for one more.
func (o *outbox) headers(n int) []kgo.RecordHeader {
	if len(o.hdrs)+n+1 > cap(o.hdrs) {
		return make([]kgo.RecordHeader, n, n+1)
	}
	start := len(o.hdrs)
	o.hdrs = o.hdrs[:start+n+1]
	return o.hdrs[start : start+n : start+n+1]
}

// send emits body on the request's response topic suffix (QoS 1, key
// the thing, the request id when set), as schemas.Outbound.Record
// encodes it.
func (o *outbox) send(suffix string, body []byte, requestID string) {
	n := 2
	if requestID != "" {
		n = 3
	}
	h := o.headers(n)
	h[0] = kgo.RecordHeader{Key: schemas.HeaderTopic, Value: o.bytes(o.req.Prefix, suffix)}
	h[1] = kgo.RecordHeader{Key: schemas.HeaderQoS, Value: o.buf[0:1:1]}
	if requestID != "" {
		h[2] = kgo.RecordHeader{Key: schemas.HeaderRequestID, Value: o.bytes(requestID, "")}
	}
	r := o.record()
	r.Topic, r.Key, r.Value, r.Headers = o.p.outbound, o.thing, body, h
	o.tx.Emit(r)
}

// changelog emits the stored document to the compacted shadows topic.
func (o *outbox) changelog(key, stored []byte) {
	r := o.record()
	r.Topic, r.Key, r.Value, r.Headers = o.p.shadows, key, stored, o.headers(0)
	o.tx.Emit(r)
}
