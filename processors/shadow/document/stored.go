package document

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/iotpipe/iotpipe/schemas/payload"
)

// AppendStored appends the stored form of s, which is also the value of
// its record on the compacted shadows changelog:
//
//	{"thing":"lamp","shadow":"","state":{"desired":{...},"reported":{...}},
//	 "metadata":{"desired":{...},"reported":{...}},"version":3,
//	 "timestamp":1591140517,"deleted":false}
//
// A deleted shadow has an empty state and metadata, keeps its version and
// has "deleted": true.
func AppendStored(dst []byte, s *Shadow) []byte {
	st, _ := appendState(make([]byte, 0, 256), s.desired, s.reported)
	n := len(st)
	st = appendMetadata(st, s.desired, s.reported)
	return appendStoredParts(dst, s, st[:n], st[n:])
}

func appendStoredParts(dst []byte, s *Shadow, state, meta []byte) []byte {
	dst = appendStoredHead(dst, s)
	dst = append(dst, state...)
	dst = append(dst, `,"metadata":`...)
	dst = append(dst, meta...)
	return appendStoredTail(dst, s)
}

// appendStoredHead writes the stored document up to the state.
func appendStoredHead(dst []byte, s *Shadow) []byte {
	dst = append(dst, `{"thing":`...)
	dst = appendString(dst, s.Thing)
	dst = append(dst, `,"shadow":`...)
	dst = appendString(dst, s.Name)
	return append(dst, `,"state":`...)
}

// appendStoredTail writes the stored document after the metadata.
func appendStoredTail(dst []byte, s *Shadow) []byte {
	dst = appendVersionTime(dst, s.Version, s.Timestamp)
	dst = append(dst, `,"deleted":`...)
	dst = strconv.AppendBool(dst, s.Deleted)
	return append(dst, '}')
}

// DecodeStored parses a document written by AppendStored. The shadow
// keeps references into b, which must not be modified afterwards.
func DecodeStored(b []byte) (Shadow, error) {
	var s Shadow
	v, err := payload.Decode(b)
	if err != nil {
		return s, fmt.Errorf("decode stored shadow: %w", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return s, errors.New("decode stored shadow: not an object")
	}
	s.Thing, _ = obj["thing"].(string)
	s.Name, _ = obj["shadow"].(string)
	s.Version, _ = obj["version"].(int64)
	s.Timestamp, _ = obj["timestamp"].(int64)
	s.Deleted, _ = obj["deleted"].(bool)
	st, _ := obj["state"].(map[string]any)
	md, _ := obj["metadata"].(map[string]any)
	if m, ok := st["desired"].(map[string]any); ok && len(m) > 0 {
		meta, _ := md["desired"].(map[string]any)
		s.desired = fromStored(m, meta)
	}
	if m, ok := st["reported"].(map[string]any); ok && len(m) > 0 {
		meta, _ := md["reported"].(map[string]any)
		s.reported = fromStored(m, meta)
	}
	s.encState, s.encMeta = locate(b)
	return s, nil
}

// locate finds the state and metadata objects in a stored document, as
// AppendStored lays it out, or returns nils.
func locate(b []byte) (state, meta []byte) {
	i := bytes.Index(b, []byte(`,"state":{`))
	if i < 0 {
		return nil, nil
	}
	i += len(`,"state":`)
	end := objectEnd(b, i)
	if end < 0 || !bytes.HasPrefix(b[end:], []byte(`,"metadata":{`)) {
		return nil, nil
	}
	j := end + len(`,"metadata":`)
	mend := objectEnd(b, j)
	if mend < 0 {
		return nil, nil
	}
	return b[i:end:end], b[j:mend:mend]
}

// objectEnd returns the index just past the JSON object starting at
// b[i] ('{'), or -1.
func objectEnd(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return i + 1
			}
		}
	}
	return -1
}
