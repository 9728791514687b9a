package clickhouse

import (
	"bytes"
	"strconv"
	"time"

	"github.com/iotpipe/iotpipe/schemas/payload"
)

// flattenJSON is Flatten(payload.Decode(data)) without building the
// decoded value. It also returns the top-level "timestamp" field (a
// number as int64 or float64, or a string), and ok=false when data is not
// one JSON value. See scratch.flatten.
func flattenJSON(data []byte) (metrics map[string]float64, timestamp any, ok bool) {
	var (
		sc   scratch
		list metricList
	)
	ts, ok := sc.flatten(data, &list)
	return list.toMap(), ts.value(), ok
}

// metricList is a payload's metrics in document order, names packed in
// one buffer, unique by name.
type metricList struct {
	names []byte
	ends  []int32 // ends[i] is the end of name i in names
	vals  []float64
	// collide is set when two paths may have flattened to one name (a
	// key that is empty or holds a dot); dedupe then resolves them.
	collide bool
}

func (l *metricList) reset() {
	l.names, l.ends, l.vals, l.collide = l.names[:0], l.ends[:0], l.vals[:0], false
}

func (l *metricList) len() int { return len(l.vals) }

// name is the name of metric i, aliasing l.
func (l *metricList) name(i int) []byte {
	start := int32(0)
	if i > 0 {
		start = l.ends[i-1]
	}
	return l.names[start:l.ends[i]]
}

func (l *metricList) add(name []byte, v float64) {
	l.names = append(l.names, name...)
	l.ends = append(l.ends, int32(len(l.names)))
	l.vals = append(l.vals, v)
}

// dedupe keeps the last value of each name (as a map assignment would).
func (l *metricList) dedupe() {
	if !l.collide {
		return
	}
	m := l.toMap()
	l.reset()
	for k, v := range m {
		l.add([]byte(k), v)
	}
}

// toMap is l as Flatten returns it: nil when empty.
func (l *metricList) toMap() map[string]float64 {
	if l.len() == 0 {
		return nil
	}
	m := make(map[string]float64, l.len())
	for i, v := range l.vals {
		m[string(l.name(i))] = v
	}
	return m
}

// tsKind says which field of a jsonTS holds the timestamp.
type tsKind uint8

const (
	tsNone tsKind = iota
	tsInt
	tsFloat
	tsString
)

// jsonTS is a payload's top-level "timestamp" field, unboxed.
type jsonTS struct {
	kind tsKind
	i    int64
	f    float64
	s    []byte // aliases the payload
}

// value is ts boxed as epochTime takes it (nil for none).
func (ts jsonTS) value() any {
	switch ts.kind {
	case tsInt:
		return ts.i
	case tsFloat:
		return ts.f
	case tsString:
		return string(ts.s)
	}
	return nil
}

// time is epochTime(ts.value()), boxing only a string.
func (ts jsonTS) time() (time.Time, bool) {
	switch ts.kind {
	case tsInt:
		return epochInt(ts.i)
	case tsFloat:
		return epochFloat(ts.f)
	case tsString:
		return epochTime(string(ts.s))
	}
	return time.Time{}, false
}

// scratch is the reusable state of one decoding goroutine: the path
// buffer and key stack of the JSON walk.
type scratch struct {
	path []byte
	keys [][2]int // raw key spans of the open objects
	// bail is set when the fast walk met something it leaves to the
	// reference path (escapes, non-ASCII, repeated keys, bad JSON).
	bail bool
	out  *metricList
	ts   jsonTS
	data []byte
}

// flatten puts Flatten(payload.Decode(data)) into out (emptied first)
// and returns the top-level "timestamp", by one walk over the bytes
// that builds nothing. Documents the walk does not take (string
// escapes, non-ASCII or control bytes in strings, a key repeated in one
// object, anything it finds invalid) go to the reference path, which
// also decides validity in the doubtful cases. ok=false when data is not
// one JSON value.
func (sc *scratch) flatten(data []byte, out *metricList) (ts jsonTS, ok bool) {
	out.reset()
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return jsonTS{}, false
	}
	sc.path, sc.keys, sc.bail, sc.out, sc.ts, sc.data = sc.path[:0], sc.keys[:0], false, out, jsonTS{}, data
	i := sc.value(0, 0)
	sc.out, sc.data = nil, nil
	if !sc.bail && i == len(data) {
		out.dedupe()
		return sc.ts, true
	}
	out.reset()
	m, slowTS, ok := slowFlatten(data)
	for k, v := range m {
		out.add([]byte(k), v)
	}
	var t jsonTS
	switch x := slowTS.(type) {
	case int64:
		t = jsonTS{kind: tsInt, i: x}
	case float64:
		t = jsonTS{kind: tsFloat, f: x}
	case string:
		t = jsonTS{kind: tsString, s: []byte(x)}
	}
	return t, ok
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (sc *scratch) skip(i int) int {
	for i < len(sc.data) && isSpace(sc.data[i]) {
		i++
	}
	return i
}

// value walks the JSON value at data[i:] whose path is sc.path; depth 1
// is a member of the top-level object. It returns the index after the
// value, or sets sc.bail.
func (sc *scratch) value(i, depth int) int {
	d := sc.data
	if i >= len(d) {
		sc.bail = true
		return i
	}
	switch c := d[i]; {
	case c == '{':
		return sc.object(i+1, depth)
	case c == '[':
		return sc.array(i+1, depth)
	case c == '"':
		end := sc.stringEnd(i)
		if !sc.bail && depth == 1 && string(sc.path) == "timestamp" {
			sc.ts = jsonTS{kind: tsString, s: d[i+1 : end-1]}
		}
		return end
	case c == '-' || c >= '0' && c <= '9':
		return sc.number(i, depth)
	case c == 't':
		return sc.literal(i, "true")
	case c == 'f':
		return sc.literal(i, "false")
	case c == 'n':
		return sc.literal(i, "null")
	}
	sc.bail = true
	return i
}

func (sc *scratch) literal(i int, lit string) int {
	if len(sc.data)-i < len(lit) || string(sc.data[i:i+len(lit)]) != lit {
		sc.bail = true
		return i
	}
	return i + len(lit)
}

// stringEnd returns the index after the plain string starting at the
// quote at i.
func (sc *scratch) stringEnd(i int) int {
	d := sc.data
	for j := i + 1; j < len(d); j++ {
		switch c := d[j]; {
		case c == '"':
			return j + 1
		case c < 0x20 || c >= 0x7f || c == '\\':
			sc.bail = true
			return j
		}
	}
	sc.bail = true
	return len(d)
}

func (sc *scratch) object(i, depth int) int {
	d := sc.data
	mark, kmark := len(sc.path), len(sc.keys)
	defer func() { sc.path, sc.keys = sc.path[:mark], sc.keys[:kmark] }()
	i = sc.skip(i)
	if i < len(d) && d[i] == '}' {
		return i + 1
	}
	for {
		if i >= len(d) || d[i] != '"' {
			sc.bail = true
			return i
		}
		end := sc.stringEnd(i)
		if sc.bail {
			return end
		}
		key := d[i+1 : end-1]
		for _, k := range sc.keys[kmark:] {
			if bytes.Equal(d[k[0]:k[1]], key) {
				sc.bail = true // the last of repeated keys wins: reference path
				return end
			}
		}
		sc.keys = append(sc.keys, [2]int{i + 1, end - 1})
		if len(key) == 0 || bytes.IndexByte(key, '.') >= 0 {
			sc.out.collide = true
		}
		i = sc.skip(end)
		if i >= len(d) || d[i] != ':' {
			sc.bail = true
			return i
		}
		sc.path = sc.path[:mark]
		if mark > 0 {
			sc.path = append(sc.path, '.')
		}
		sc.path = append(sc.path, key...)
		i = sc.value(sc.skip(i+1), depth+1)
		if sc.bail {
			return i
		}
		i = sc.skip(i)
		if i >= len(d) {
			sc.bail = true
			return i
		}
		switch d[i] {
		case ',':
			i = sc.skip(i + 1)
		case '}':
			return i + 1
		default:
			sc.bail = true
			return i
		}
	}
}

func (sc *scratch) array(i, depth int) int {
	d := sc.data
	mark := len(sc.path)
	defer func() { sc.path = sc.path[:mark] }()
	i = sc.skip(i)
	if i < len(d) && d[i] == ']' {
		return i + 1
	}
	for n := 0; ; n++ {
		sc.path = sc.path[:mark]
		if mark > 0 {
			sc.path = append(sc.path, '.')
		}
		sc.path = strconv.AppendInt(sc.path, int64(n), 10)
		i = sc.value(i, depth+2) // never a top-level member
		if sc.bail {
			return i
		}
		i = sc.skip(i)
		if i >= len(d) {
			sc.bail = true
			return i
		}
		switch d[i] {
		case ',':
			i = sc.skip(i + 1)
		case ']':
			return i + 1
		default:
			sc.bail = true
			return i
		}
	}
}

// number reads an RFC 8259 number and stores it under the path.
func (sc *scratch) number(i, depth int) int {
	d := sc.data
	start := i
	if d[i] == '-' {
		i++
	}
	digits := i
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		sc.bail = true
		return i
	}
	integer := true
	if i < len(d) && d[i] == '.' {
		integer = false
		i++
		j := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == j {
			sc.bail = true
			return i
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		integer = false
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == j {
			sc.bail = true
			return i
		}
	}
	lit := d[start:i]
	var (
		f  float64
		n  int64
		ok bool
	)
	if integer && i-digits <= 18 {
		for _, c := range d[digits:i] {
			n = n*10 + int64(c-'0')
		}
		if d[start] == '-' {
			n = -n
		}
		f, ok = float64(n), true
	} else {
		var err error
		f, err = strconv.ParseFloat(string(lit), 64)
		ok = err == nil
		if ok && integer {
			n, err = strconv.ParseInt(string(lit), 10, 64)
			integer = err == nil
		}
	}
	if !ok {
		// Out of float64 range: the reference keeps it as text (no
		// metric; a "timestamp" is that text, as a string would be).
		if depth == 1 && string(sc.path) == "timestamp" {
			sc.ts = jsonTS{kind: tsString, s: lit}
		}
		return i
	}
	if len(sc.path) > 0 {
		sc.out.add(sc.path, f)
	} else {
		sc.out.add([]byte("value"), f)
	}
	if depth == 1 && string(sc.path) == "timestamp" {
		if integer {
			sc.ts = jsonTS{kind: tsInt, i: n}
		} else {
			sc.ts = jsonTS{kind: tsFloat, f: f}
		}
	}
	return i
}

// slowFlatten is the reference: decode, then Flatten.
func slowFlatten(data []byte) (map[string]float64, any, bool) {
	v, err := payload.DecodeLenient(data) // 1e999 is no metric, as in the fast walk
	if err != nil {
		return nil, nil, false
	}
	var ts any
	if m, ok := v.(map[string]any); ok {
		switch x := m["timestamp"].(type) {
		case int64, float64, string:
			ts = x
		}
	}
	return Flatten(v, nil), ts, true
}
