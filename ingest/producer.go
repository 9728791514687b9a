package ingest

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ProducerOpts are the franz-go options ingest's producer needs:
// idempotent, acks=all, a large buffer so many connections can have
// publishes in flight, bounded in records and in bytes
// (ProducerMaxBufferedBytes: when full, Produce waits, so readers wait
// and TCP pushes back on clients; nothing is dropped), and a delivery
// timeout after which a publish fails (and is not acknowledged) instead
// of waiting forever.
func ProducerOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.MaxBufferedRecords(1 << 20),
		kgo.MaxBufferedBytes(ProducerMaxBufferedBytes),
		kgo.ProducerLinger(2 * time.Millisecond),
		kgo.RecordDeliveryTimeout(10 * time.Second),
		kgo.ProducerBatchMaxBytes(1 << 20),
	}
}

// ProducerMaxBufferedBytes bounds the bytes (keys, values, headers) the
// producer of ProducerOpts buffers.
const ProducerMaxBufferedBytes = 64 << 20
