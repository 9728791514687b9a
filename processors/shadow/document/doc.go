// Package document holds the pure semantics of AWS IoT Device Shadow
// documents: parsing and validating update/get/delete requests, merging
// desired and reported state (null deletes a key), per-leaf metadata
// timestamps, the delta between desired and reported, versioning, and
// the exact JSON of AWS's accepted, delta, documents and error responses.
//
// It does no I/O and reads no clock: the caller passes the time (Unix
// seconds) and stores the documents, so the same requests always give
// the same bytes.
//
// Values are those of schemas/payload: map[string]any, []any, string,
// bool, nil, int64 and float64. Object keys are written sorted, so equal
// documents encode to equal bytes.
package document

// Limits bound what an update may do. The zero value of a field means
// its default.
type Limits struct {
	// MaxSize is the largest request payload, and the largest state
	// (desired plus reported, encoded, metadata excluded), in bytes.
	// Default 8192 (AWS: 8 KB per shadow document).
	MaxSize int
	// MaxDepth is the deepest nesting of objects and arrays allowed in
	// desired and reported, counting the desired/reported object itself
	// as level 1 (a value at the end of a path of six keys is allowed,
	// a non-empty object or array below it is not). Default 6 (AWS).
	MaxDepth int
	// MaxClientToken is the longest clientToken in bytes. Default 64
	// (AWS).
	MaxClientToken int
}

// Default limits, as AWS IoT.
const (
	DefaultMaxSize        = 8192
	DefaultMaxDepth       = 6
	DefaultMaxClientToken = 64
)

// withDefaults fills zero fields with the defaults.
func (l Limits) withDefaults() Limits {
	if l.MaxSize <= 0 {
		l.MaxSize = DefaultMaxSize
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxClientToken <= 0 {
		l.MaxClientToken = DefaultMaxClientToken
	}
	return l
}

// Shadow is one shadow document as stored: its state, the metadata
// (per-leaf {"timestamp": seconds}), its version and the time of its
// last change. A Shadow is immutable once built: Apply and Delete return
// new ones that share unchanged parts.
//
// A shadow that was deleted keeps its version (Deleted is set and the
// state is empty), so the next update continues from it, as in AWS. A
// shadow that never existed has Version 0.
type Shadow struct {
	// Thing is the thing name; Name the shadow name ("" for the classic,
	// unnamed shadow).
	Thing, Name string
	// Version is the document version: the number of accepted updates
	// (deletes do not count).
	Version int64
	// Timestamp is the Unix time in seconds of the last accepted change.
	Timestamp int64
	// Deleted reports that the shadow was deleted after its last update.
	Deleted bool

	// desired and reported hold the state sections with their metadata;
	// nil when absent.
	desired, reported object

	// encState and encMeta, when set, are the encoding of the state and
	// metadata (as appendState and appendMetadata write them), kept so
	// they need not be encoded again. enc holds, when set, the
	// encodings of each section's state and metadata (desired state,
	// reported state, desired metadata, reported metadata), which an
	// update that leaves a section as it was copies.
	encState, encMeta []byte
	enc               [4][]byte
}

// Exists reports whether the shadow has a current document (it was
// updated at least once and not deleted since).
func (s *Shadow) Exists() bool { return s.Version > 0 && !s.Deleted }

// Desired returns a copy of the desired state in the payload
// representation (map[string]any, []any, string, bool, int64, float64),
// or nil when there is none.
func (s *Shadow) Desired() map[string]any { return s.desired.toMap() }

// Reported returns a copy of the reported state, like Desired.
func (s *Shadow) Reported() map[string]any { return s.reported.toMap() }
