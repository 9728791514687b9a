package document

// object is a state object with its metadata: fields sorted by key.
// Unchanged objects are shared between shadow versions, so an object is
// never modified once built.
type object []field

// field is one key of an object: a nested object (val is an object), or
// a value (a leaf or an array, in the payload representation) with the
// time it was set. An array is always replaced whole, so all its
// elements share one timestamp.
type field struct {
	key string
	val any
	ts  int64
}

// object returns the nested object of f, if f holds one.
func (f *field) object() (object, bool) {
	o, ok := f.val.(object)
	return o, ok
}

// toMap converts o to the payload representation.
func (o object) toMap() map[string]any {
	if o == nil {
		return nil
	}
	m := make(map[string]any, len(o))
	for _, f := range o {
		if o, ok := f.val.(object); ok {
			m[f.key] = o.toMap()
		} else {
			m[f.key] = copyValue(f.val)
		}
	}
	return m
}

// copyValue deep-copies the arrays and objects of a payload value.
func copyValue(v any) any {
	switch t := v.(type) {
	case []any:
		a := make([]any, len(t))
		for i, x := range t {
			a[i] = copyValue(x)
		}
		return a
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[k] = copyValue(x)
		}
		return m
	}
	return v
}

// mergeObject applies patch (an update's object, see toPatch) at time ts
// to old and returns the new object; old is not modified. A null (or
// {}) in patch removes the key; an object merges into an object (into
// nothing when the key held no object: then if it leaves nothing,
// because it held only nulls, the key is not created, as AWS does);
// anything else replaces the key's value.
func mergeObject(old, patch object, ts int64) object {
	// Merged on the stack, then copied to a slice of the exact size.
	var buf [32]field
	out := buf[:0]
	i, j := 0, 0
	for i < len(old) || j < len(patch) {
		if j == len(patch) || (i < len(old) && old[i].key < patch[j].key) {
			out = append(out, old[i])
			i++
			continue
		}
		pf := &patch[j]
		j++
		var cur *field
		if i < len(old) && old[i].key == pf.key {
			cur = &old[i]
			i++
		}
		switch p := pf.val.(type) {
		case nil:
		case object:
			if len(p) == 0 {
				continue
			}
			var base object
			wasObj := false
			if cur != nil {
				base, wasObj = cur.object()
			}
			sub := mergeObject(base, p, ts)
			if !wasObj && len(sub) == 0 {
				continue
			}
			out = append(out, field{key: pf.key, val: sub})
		default:
			out = append(out, field{key: pf.key, val: p, ts: ts})
		}
	}
	return append(make(object, 0, len(out)), out...)
}

// mergeSection applies the desired or reported part of an update to that
// section. An absent part leaves it; null or {} (part empty) removes it;
// an object merges. A section left empty is removed.
func mergeSection(old, part object, present bool, ts int64) object {
	if !present {
		return old
	}
	if len(part) == 0 {
		return nil
	}
	out := mergeObject(old, part, ts)
	if len(out) == 0 {
		return nil
	}
	return out
}

// delta returns the desired fields whose value differs from reported:
// objects are compared key by key (the delta keeps the path to the
// differing leaves), everything else (arrays included) as a whole;
// numbers by value. Empty objects in desired are skipped. The fields
// keep desired's timestamps, which are the delta's metadata. It returns
// nil when nothing differs.
func delta(desired, reported object) object {
	// Built on the stack, then copied to a slice of the exact size.
	var buf [32]field
	out := buf[:0]
	j := 0
	for i := range desired {
		d := &desired[i]
		dObj, dIsObj := d.object()
		if dIsObj && len(dObj) == 0 {
			continue
		}
		for j < len(reported) && reported[j].key < d.key {
			j++
		}
		if j == len(reported) || reported[j].key != d.key {
			out = append(out, *d)
			continue
		}
		rObj, rIsObj := reported[j].object()
		switch {
		case rIsObj && len(rObj) == 0:
			out = append(out, *d)
		case dIsObj && rIsObj:
			if sub := delta(dObj, rObj); sub != nil {
				out = append(out, field{key: d.key, val: sub})
			}
		case dIsObj != rIsObj || !equal(d.val, reported[j].val):
			out = append(out, *d)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return append(make(object, 0, len(out)), out...)
}

// equal compares two payload values; numbers compare by value (1 equals
// 1.0).
func equal(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case int64:
		switch y := b.(type) {
		case int64:
			return x == y
		case float64:
			return float64(x) == y
		}
		return false
	case float64:
		switch y := b.(type) {
		case int64:
			return x == float64(y)
		case float64:
			return x == y
		}
		return false
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !equal(xv, yv) {
				return false
			}
		}
		return true
	}
	return false
}

// appendObjectState writes the state of o as JSON.
func appendObjectState(dst []byte, o object) []byte {
	dst = append(dst, '{')
	for i := range o {
		f := &o[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, f.key)
		dst = append(dst, ':')
		if o, ok := f.val.(object); ok {
			dst = appendObjectState(dst, o)
		} else {
			dst = appendValue(dst, f.val)
		}
	}
	return append(dst, '}')
}

// appendObjectMeta writes the metadata of o in AWS's shape: the state's
// shape with {"timestamp": ts} leaves.
func appendObjectMeta(dst []byte, o object) []byte {
	var l tsLeaf
	return appendObjectMetaLeaf(dst, o, &l, nil)
}

// appendPatchMeta writes the metadata of an update's object at time ts:
// every leaf (null included) is {"timestamp": ts}.
func appendPatchMeta(dst []byte, o object, ts int64) []byte {
	var buf [40]byte
	return appendObjectMetaLeaf(dst, o, nil, appendTimestamp(buf[:0], ts))
}

// appendObjectMetaLeaf writes the metadata of o with each field's own
// timestamp (from l), or with leaf for every field when leaf is set.
func appendObjectMetaLeaf(dst []byte, o object, l *tsLeaf, leaf []byte) []byte {
	dst = append(dst, '{')
	for i := range o {
		f := &o[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, f.key)
		dst = append(dst, ':')
		if o, ok := f.val.(object); ok {
			dst = appendObjectMetaLeaf(dst, o, l, leaf)
		} else if leaf != nil {
			dst = appendMetaLeaf(dst, f.val, leaf)
		} else {
			dst = appendMetaLeaf(dst, f.val, l.get(f.ts))
		}
	}
	return append(dst, '}')
}

// tsLeaf keeps the encoding of the last metadata leaf {"timestamp":ts}
// written: the fields of a document mostly share a few timestamps.
type tsLeaf struct {
	ts  int64
	n   int
	buf [40]byte
}

// get returns the encoding of {"timestamp":ts}, valid until the next
// call.
func (l *tsLeaf) get(ts int64) []byte {
	if l.n == 0 || l.ts != ts {
		l.ts, l.n = ts, len(appendTimestamp(l.buf[:0], ts))
	}
	return l.buf[:l.n]
}

// fromStored builds an object from a decoded stored state object and its
// AWS-shaped metadata.
func fromStored(state, meta map[string]any) object {
	var buf [16]string
	keys := sortedKeys(buf[:0], state)
	o := make(object, len(keys))
	for i, k := range keys {
		v := state[k]
		if m, ok := v.(map[string]any); ok {
			sub, _ := meta[k].(map[string]any)
			o[i] = field{key: k, val: fromStored(m, sub)}
			continue
		}
		o[i] = field{key: k, val: v, ts: leafTime(meta[k])}
	}
	return o
}

// leafTime returns the first timestamp found in AWS-shaped metadata.
func leafTime(meta any) int64 {
	switch t := meta.(type) {
	case map[string]any:
		if ts, ok := t["timestamp"].(int64); ok && len(t) == 1 {
			return ts
		}
		for _, x := range t {
			if ts := leafTime(x); ts != 0 {
				return ts
			}
		}
	case []any:
		for _, x := range t {
			if ts := leafTime(x); ts != 0 {
				return ts
			}
		}
	}
	return 0
}
