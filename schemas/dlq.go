package schemas

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Headers every record sent to the dead-letter topic carries: which part
// of iotpipe gave up on it (processor, sink or executor name), why, and
// the source of what failed (the "topic/partition/offset" of the record,
// or another id where there is no record). Stages add their own dlq.*
// headers beside these (dlq.rule, dlq.kind, ...).
const (
	HeaderDLQStage  = "dlq.stage"
	HeaderDLQReason = "dlq.reason"
	HeaderDLQSource = "dlq.source"
)

// AppendDLQHeaders appends the dead-letter headers to h. An empty source
// is left out.
func AppendDLQHeaders(h []kgo.RecordHeader, stage, reason, source string) []kgo.RecordHeader {
	h = append(h,
		kgo.RecordHeader{Key: HeaderDLQStage, Value: []byte(stage)},
		kgo.RecordHeader{Key: HeaderDLQReason, Value: []byte(reason)},
	)
	if source != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderDLQSource, Value: []byte(source)})
	}
	return h
}

// RecordSource is the "topic/partition/offset" of r.
func RecordSource(r *kgo.Record) string {
	return r.Topic + "/" + strconv.FormatInt(int64(r.Partition), 10) + "/" + strconv.FormatInt(r.Offset, 10)
}

// DeadLetter returns the dead-letter record of r on topic: r's key and
// value, r's headers, extra headers, then the dead-letter headers with r
// as the source.
func DeadLetter(topic string, r *kgo.Record, stage string, reason error, extra ...kgo.RecordHeader) *kgo.Record {
	h := make([]kgo.RecordHeader, 0, len(r.Headers)+len(extra)+3)
	h = append(append(h, r.Headers...), extra...)
	return &kgo.Record{Topic: topic, Key: r.Key, Value: r.Value, Headers: AppendDLQHeaders(h, stage, reason.Error(), RecordSource(r))}
}
