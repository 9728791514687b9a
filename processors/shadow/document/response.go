package document

import "strconv"

// Result holds the messages of an accepted update.
type Result struct {
	// Accepted is the update/accepted document: the state as sent, its
	// metadata, the new version, the timestamp and the clientToken.
	Accepted []byte
	// Delta is the update/delta document, or nil when desired and
	// reported do not differ.
	Delta []byte
	// Documents is the update/documents document: previous (null when
	// the shadow did not exist) and current, each with state, metadata
	// and version.
	Documents []byte
	// Stored is the new document as stored and sent to the shadows
	// changelog (see AppendStored).
	Stored []byte
}

// Apply applies the update u at time now (Unix seconds) to s and returns
// the new shadow and its messages. s is not modified: unchanged parts
// are shared between s and the result, so neither may be mutated
// afterwards. A version that does not match is rejected with 409, a
// resulting state larger than the size limit with 413.
func Apply(s *Shadow, u *Update, now int64, lim Limits) (Shadow, Result, *Error) {
	lim = lim.withDefaults()
	if u.HasVersion && u.Version != s.Version {
		return *s, Result{}, ErrVersionConflict
	}
	next := Shadow{Thing: s.Thing, Name: s.Name, Version: s.Version + 1, Timestamp: now}
	if !u.StateNull {
		var desired, reported object
		if !s.Deleted {
			desired, reported = s.desired, s.reported
		}
		next.desired = mergeSection(desired, u.desired, u.HasDesired, now)
		next.reported = mergeSection(reported, u.reported, u.HasReported, now)
	}

	// The stored document, written first: its state and metadata are
	// measured for the size limit and copied into the documents message.
	// Sized for an update of keys the shadow has (a shadow that grows
	// grows the buffer).
	stored := make([]byte, 0, len(s.encState)+len(s.encMeta)+u.size+2*(len(next.Thing)+len(next.Name))+160)
	stored = appendStoredHead(stored, &next)
	// A section the update leaves as it was is copied from the
	// previous document's encoding.
	var prev [4][]byte
	if !u.StateNull && !s.Deleted {
		if !u.HasDesired {
			prev[0], prev[2] = s.enc[0], s.enc[2]
		}
		if !u.HasReported {
			prev[1], prev[3] = s.enc[1], s.enc[3]
		}
	}
	var spans [4][2]int
	stateStart := len(stored)
	stored, spans[0], spans[1] = appendSections(stored, next.desired, next.reported, prev[0], prev[1], appendObjectState)
	if size := spans[0][1] - spans[0][0] + spans[1][1] - spans[1][0]; size > lim.MaxSize {
		return *s, Result{}, ErrTooLarge
	}
	stateEnd := len(stored)
	stored = append(stored, `,"metadata":`...)
	metaStart := len(stored)
	stored, spans[2], spans[3] = appendSections(stored, next.desired, next.reported, prev[2], prev[3], appendObjectMeta)
	metaEnd := len(stored)
	stored = appendStoredTail(stored, &next)
	curState, curMeta := stored[stateStart:stateEnd:stateEnd], stored[metaStart:metaEnd:metaEnd]
	for i, sp := range spans {
		if sp[1] > sp[0] {
			next.enc[i] = stored[sp[0]:sp[1]:sp[1]]
		}
	}

	var r Result
	var acc []byte
	// Room for ,"clientToken":"..." (escapes aside).
	tokLen := len(u.ClientToken) + 20
	if u.StateNull {
		acc = make([]byte, 0, 128+tokLen)
		acc = append(acc, `{"state":null,"metadata":`...)
		acc = appendTimestamp(acc, now)
	} else {
		// The state as sent and its metadata. (Both go to stack buffers first, so that the message is
		// allocated at its size; larger ones spill to the heap.)
		var stateBuf [1024]byte
		var metaBuf [2048]byte
		st := appendObjectState(stateBuf[:0], u.state)
		md := appendPatchMeta(metaBuf[:0], u.state, now)
		acc = make([]byte, 0, len(st)+len(md)+messageOverhead+tokLen)
		acc = append(acc, `{"state":`...)
		acc = append(acc, st...)
		acc = append(acc, `,"metadata":`...)
		acc = append(acc, md...)
	}
	acc = appendVersionTime(acc, next.Version, now)
	acc = appendToken(acc, u.ClientToken, u.HasClientToken)
	r.Accepted = append(acc, '}')

	if d := delta(next.desired, next.reported); d != nil {
		// State and metadata go to stack buffers first, so that the
		// message is allocated at its size.
		var stateBuf [1024]byte
		var metaBuf [2048]byte
		st := appendObjectState(stateBuf[:0], d)
		md := appendObjectMeta(metaBuf[:0], d)
		out := make([]byte, 0, len(st)+len(md)+messageOverhead+tokLen)
		out = append(out, `{"version":`...)
		out = strconv.AppendInt(out, next.Version, 10)
		out = append(out, `,"timestamp":`...)
		out = strconv.AppendInt(out, now, 10)
		out = append(out, `,"state":`...)
		out = append(out, st...)
		out = append(out, `,"metadata":`...)
		out = append(out, md...)
		out = appendToken(out, u.ClientToken, u.HasClientToken)
		r.Delta = append(out, '}')
	}

	docs := make([]byte, 0, len(s.encState)+len(s.encMeta)+len(curState)+len(curMeta)+160+tokLen)
	docs = append(docs, `{"previous":`...)
	if s.Exists() {
		docs = append(docs, `{"state":`...)
		if s.encState != nil {
			docs = append(docs, s.encState...)
			docs = append(docs, `,"metadata":`...)
			docs = append(docs, s.encMeta...)
		} else {
			docs, _ = appendState(docs, s.desired, s.reported)
			docs = append(docs, `,"metadata":`...)
			docs = appendMetadata(docs, s.desired, s.reported)
		}
		docs = append(docs, `,"version":`...)
		docs = strconv.AppendInt(docs, s.Version, 10)
		docs = append(docs, '}')
	} else {
		docs = append(docs, "null"...)
	}
	docs = append(docs, `,"current":{"state":`...)
	docs = append(docs, curState...)
	docs = append(docs, `,"metadata":`...)
	docs = append(docs, curMeta...)
	docs = append(docs, `,"version":`...)
	docs = strconv.AppendInt(docs, next.Version, 10)
	docs = append(docs, `},"timestamp":`...)
	docs = strconv.AppendInt(docs, now, 10)
	docs = appendToken(docs, u.ClientToken, u.HasClientToken)
	r.Documents = append(docs, '}')

	r.Stored = stored
	next.encState, next.encMeta = curState, curMeta
	return next, r, nil
}

// messageOverhead bounds the bytes of an accepted or delta message
// around its state, metadata and clientToken.
const messageOverhead = 96

// AppendGet appends the get/accepted document of s at time now: state
// (desired, reported and their delta), metadata, version, timestamp and
// the clientToken. It rejects with 404 a shadow that does not exist.
func AppendGet(dst []byte, s *Shadow, now int64, tok Token) ([]byte, *Error) {
	if !s.Exists() {
		return dst, ErrNotFound(displayName(s))
	}
	dst = append(dst, `{"state":{`...)
	n := 0
	if s.desired != nil {
		dst = append(dst, `"desired":`...)
		dst = appendObjectState(dst, s.desired)
		n++
	}
	if s.reported != nil {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `"reported":`...)
		dst = appendObjectState(dst, s.reported)
		n++
	}
	if d := delta(s.desired, s.reported); d != nil {
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `"delta":`...)
		dst = appendObjectState(dst, d)
	}
	dst = append(dst, `},"metadata":`...)
	if s.encMeta != nil {
		dst = append(dst, s.encMeta...)
	} else {
		dst = appendMetadata(dst, s.desired, s.reported)
	}
	dst = appendVersionTime(dst, s.Version, now)
	dst = appendToken(dst, tok.ClientToken, tok.HasClientToken)
	return append(dst, '}'), nil
}

// Delete deletes s at time now. The deleted shadow keeps its version,
// so the next update continues from it. It returns the deleted shadow,
// the delete/accepted document ({"version","timestamp","clientToken"})
// and the stored document. It rejects with 404 a shadow that does not
// exist and with 409 a version that does not match.
func Delete(s *Shadow, tok Token, now int64) (Shadow, []byte, []byte, *Error) {
	if !s.Exists() {
		return *s, nil, nil, ErrNotFound(displayName(s))
	}
	if tok.HasVersion && tok.Version != s.Version {
		return *s, nil, nil, ErrVersionConflict
	}
	next := Shadow{Thing: s.Thing, Name: s.Name, Version: s.Version, Timestamp: now, Deleted: true}
	acc := make([]byte, 0, 64+len(tok.ClientToken))
	acc = append(acc, `{"version":`...)
	acc = strconv.AppendInt(acc, s.Version, 10)
	acc = append(acc, `,"timestamp":`...)
	acc = strconv.AppendInt(acc, now, 10)
	acc = appendToken(acc, tok.ClientToken, tok.HasClientToken)
	acc = append(acc, '}')
	return next, acc, AppendStored(nil, &next), nil
}

func displayName(s *Shadow) string {
	if s.Name != "" {
		return s.Name
	}
	return s.Thing
}

// appendVersionTime writes ,"version":v,"timestamp":t.
func appendVersionTime(dst []byte, v, t int64) []byte {
	dst = append(dst, `,"version":`...)
	dst = strconv.AppendInt(dst, v, 10)
	dst = append(dst, `,"timestamp":`...)
	return strconv.AppendInt(dst, t, 10)
}

// appendState writes {"desired":...,"reported":...} (absent sections
// left out) and returns the encoded size of the sections' values, which
// is what the size limit counts.
func appendState(dst []byte, desired, reported object) ([]byte, int) {
	dst, d, r := appendSections(dst, desired, reported, nil, nil, appendObjectState)
	return dst, d[1] - d[0] + r[1] - r[0]
}

// appendMetadata writes {"desired":...,"reported":...} of metadata.
func appendMetadata(dst []byte, desired, reported object) []byte {
	dst, _, _ = appendSections(dst, desired, reported, nil, nil, appendObjectMeta)
	return dst
}

// appendSections writes {"desired":...,"reported":...} (absent sections
// left out), each section's value encoded by enc, or copied from
// encDesired or encReported when set. It returns the span of each value
// in dst (empty when absent).
func appendSections(dst []byte, desired, reported object, encDesired, encReported []byte, enc func([]byte, object) []byte) (out []byte, d, r [2]int) {
	dst = append(dst, '{')
	if desired != nil {
		dst = append(dst, `"desired":`...)
		d[0] = len(dst)
		if encDesired != nil {
			dst = append(dst, encDesired...)
		} else {
			dst = enc(dst, desired)
		}
		d[1] = len(dst)
	}
	if reported != nil {
		if desired != nil {
			dst = append(dst, ',')
		}
		dst = append(dst, `"reported":`...)
		r[0] = len(dst)
		if encReported != nil {
			dst = append(dst, encReported...)
		} else {
			dst = enc(dst, reported)
		}
		r[1] = len(dst)
	}
	return append(dst, '}'), d, r
}
