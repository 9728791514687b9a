package timer

import (
	"github.com/iotpipe/iotpipe/processors"
	"github.com/iotpipe/iotpipe/processors/analytics/memstore"
)

// The rules processor hands its *processors.Tx to Timers.
var _ Store = (*processors.Tx)(nil)

// memStore is the shared in-memory test store.
type memStore = memstore.Store

func newMemStore() *memStore { return memstore.New() }

var errInjected = memstore.ErrInjected
