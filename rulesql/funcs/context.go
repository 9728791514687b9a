package funcs

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/iotpipe/iotpipe/rulesql/env"
	"github.com/iotpipe/iotpipe/rulesql/value"
)

// TopicLevel returns level n (1-based) of topic, or false. An empty
// first level ('/a/b') counts as level 1.
func TopicLevel(topic string, n int64) (string, bool) {
	if n < 1 {
		return "", false
	}
	for i := int64(1); ; i++ {
		j := strings.IndexByte(topic, '/')
		if i == n {
			if j < 0 {
				return topic, true
			}
			return topic[:j], true
		}
		if j < 0 {
			return "", false
		}
		topic = topic[j+1:]
	}
}

// Topic implements topic() and topic(n).
func Topic(c *env.Ctx, a []any) any {
	if len(a) == 0 {
		return c.In.Topic
	}
	n, ok := value.ToInt(a[0])
	if !ok {
		return value.Undefined
	}
	s, ok := TopicLevel(c.In.Topic, n)
	if !ok {
		return value.Undefined
	}
	return s
}

// eventUUID derives a UUID from the event's partition and offset when it
// has a log position, so a replay gives the same id; otherwise random.
func eventUUID(c *env.Ctx, salt byte) string {
	if c.In.Offset == 0 && c.In.Partition == 0 {
		return uuid.NewString()
	}
	var b [13]byte
	binary.BigEndian.PutUint32(b[:4], uint32(c.In.Partition))
	binary.BigEndian.PutUint64(b[4:12], uint64(c.In.Offset))
	b[12] = salt
	return uuid.NewSHA1(uuid.NameSpaceOID, append(b[:], c.Rule...)).String()
}

func contextFuncs() []*Func {
	return []*Func{
		{Name: "topic", Min: 0, Max: 1, Volatile: true, Doc: "the topic, or its n-th level (1-based)", Example: "topic(2) on 'farm/barn1/temp' = 'barn1'", Impl: Topic},
		{Name: "clientid", Min: 0, Max: 0, Volatile: true, Doc: "the MQTT client id of the sender", Example: "clientid() = 'sensor-1'",
			Impl: func(c *env.Ctx, _ []any) any { return c.In.ClientID }},
		{Name: "principal", Min: 0, Max: 0, Volatile: true, Doc: "the sender's principal (certificate id or user)", Example: "principal() = 'a1b2...'",
			Impl: func(c *env.Ctx, _ []any) any { return c.In.Principal }},
		{Name: "timestamp", Min: 0, Max: 0, Volatile: true, Doc: "the receive time in epoch milliseconds", Example: "timestamp() = 1763812800000",
			Impl: func(c *env.Ctx, _ []any) any { return c.In.Timestamp }},
		{Name: "traceid", Min: 0, Max: 0, Volatile: true, Doc: "a trace id for the message (stable across replays of the same log record)", Example: "traceid() = '0f8b5c2e-...'",
			Impl: func(c *env.Ctx, _ []any) any { return eventUUID(c, 't') }},
		{Name: "newuuid", Min: 0, Max: 0, Volatile: true, Doc: "a random 16-byte UUID as a String", Example: "newuuid() = '5b1e1c1e-...'",
			Impl: func(c *env.Ctx, _ []any) any { return uuid.NewString() }},
		{Name: "parse_time", Min: 2, Max: 3, Doc: "format epoch milliseconds with a Java/Joda pattern, in UTC or the given zone", Example: "parse_time('yyyy-MM-dd', 1763812800000) = '2025-11-22'",
			Impl: parseTime, Prepare: prepareParseTime},
		{Name: "time_to_epoch", Min: 2, Max: 2, Doc: "parse a time String with a Java/Joda pattern into epoch milliseconds", Example: "time_to_epoch('2025-11-22 12:00:00', 'yyyy-MM-dd HH:mm:ss') = 1763812800000",
			Impl: timeToEpoch, Prepare: func(c []Const) (Impl, error) {
				if c[1].OK {
					if p, ok := c[1].Value.(string); ok {
						if _, err := JodaLayout(p); err != nil {
							return nil, err
						}
					}
				}
				return nil, nil
			}},
		{Name: "get", Min: 2, Max: 2, Doc: "element of an Array by index, or attribute of an Object by name", Example: "get(['a','b'], 1) = 'b'", Impl: get},
		{Name: "get_thing_shadow", Min: 1, Max: 3, Volatile: true, Doc: "the shadow document of a thing from iotpipe's shadow view (get_thing_shadow(thing[, shadowName][, roleArn]))", Example: "get_thing_shadow('lamp-1').state.reported.on = true",
			Impl: getThingShadow},
	}
}

func get(_ *env.Ctx, a []any) any {
	switch t := a[0].(type) {
	case []any:
		i, ok := value.ToInt(a[1])
		if !ok || i < 0 || i >= int64(len(t)) {
			return value.Undefined
		}
		return t[i]
	case map[string]any:
		k, ok := value.ToString(a[1])
		if !ok {
			return value.Undefined
		}
		v, ok := t[k]
		if !ok {
			return value.Undefined
		}
		return v
	case string:
		i, ok := value.ToInt(a[1])
		r := []rune(t)
		if !ok || i < 0 || i >= int64(len(r)) {
			return value.Undefined
		}
		return string(r[i])
	}
	return value.Undefined
}

func getThingShadow(c *env.Ctx, a []any) any {
	thing, ok := a[0].(string)
	if !ok || c.In.Shadow == nil {
		return value.Undefined
	}
	name := ""
	if len(a) == 3 {
		name, _ = a[1].(string)
	} else if len(a) == 2 {
		if s, ok := a[1].(string); ok && !strings.HasPrefix(s, "arn:") {
			name = s
		}
	}
	doc, found, err := c.In.Shadow.ThingShadow(thing, name)
	if err != nil {
		if c.Err == nil {
			c.Err = fmt.Errorf("get_thing_shadow(%q): %w", thing, err)
		}
		return value.Undefined
	}
	if !found {
		return value.Undefined
	}
	return doc
}

func zone(a []any) (*time.Location, bool) {
	if len(a) < 3 {
		return time.UTC, true
	}
	z, ok := a[2].(string)
	if !ok {
		return nil, false
	}
	loc, err := time.LoadLocation(z)
	if err != nil {
		return nil, false
	}
	return loc, true
}

func parseTime(_ *env.Ctx, a []any) any {
	p, ok := a[0].(string)
	if !ok {
		return value.Undefined
	}
	layout, err := JodaLayout(p)
	if err != nil {
		return value.Undefined
	}
	return formatTime(layout, a)
}

func formatTime(layout string, a []any) any {
	ms, ok := value.ToInt(a[1])
	loc, ok2 := zone(a)
	if !ok || !ok2 {
		return value.Undefined
	}
	return time.UnixMilli(ms).In(loc).Format(layout)
}

func prepareParseTime(c []Const) (Impl, error) {
	if !c[0].OK {
		return nil, nil
	}
	p, ok := c[0].Value.(string)
	if !ok {
		return nil, fmt.Errorf("pattern must be a string")
	}
	layout, err := JodaLayout(p)
	if err != nil {
		return nil, err
	}
	if len(c) > 2 && c[2].OK {
		if z, ok := c[2].Value.(string); !ok {
			return nil, fmt.Errorf("time zone must be a string")
		} else if _, err := time.LoadLocation(z); err != nil {
			return nil, fmt.Errorf("unknown time zone %q", z)
		}
	}
	return func(_ *env.Ctx, a []any) any { return formatTime(layout, a) }, nil
}

func timeToEpoch(_ *env.Ctx, a []any) any {
	s, ok1 := a[0].(string)
	p, ok2 := a[1].(string)
	if !ok1 || !ok2 {
		return value.Undefined
	}
	layout, err := JodaLayout(p)
	if err != nil {
		return value.Undefined
	}
	t, err := time.ParseInLocation(layout, s, time.UTC)
	if err != nil {
		return value.Undefined
	}
	return t.UnixMilli()
}

// JodaLayout converts a Java/Joda-Time pattern (yyyy-MM-dd'T'HH:mm:ss.SSSZ)
// to a Go time layout.
func JodaLayout(p string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(p); {
		c := p[i]
		if c == '\'' {
			if i+1 < len(p) && p[i+1] == '\'' { // '' is a quote
				b.WriteByte('\'')
				i += 2
				continue
			}
			// quoted literal text; '' inside is a quote
			i++
			for {
				if i >= len(p) {
					return "", fmt.Errorf("unterminated quote in time pattern %q", p)
				}
				if p[i] == '\'' {
					if i+1 < len(p) && p[i+1] == '\'' {
						b.WriteByte('\'')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(p[i])
				i++
			}
			continue
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			b.WriteByte(c)
			i++
			continue
		}
		n := 1
		for i+n < len(p) && p[i+n] == c {
			n++
		}
		i += n
		var s string
		switch c {
		case 'y', 'Y', 'u':
			s = "2006"
			if n == 2 {
				s = "06"
			}
		case 'M':
			s = [...]string{"1", "01", "Jan", "January"}[min(n, 4)-1]
		case 'd':
			s = "2"
			if n >= 2 {
				s = "02"
			}
		case 'H', 'k':
			s = "15"
		case 'h', 'K':
			s = "3"
			if n >= 2 {
				s = "03"
			}
		case 'm':
			s = "4"
			if n >= 2 {
				s = "04"
			}
		case 's':
			s = "5"
			if n >= 2 {
				s = "05"
			}
		case 'S':
			s = strings.Repeat("0", n)
		case 'a':
			s = "PM"
		case 'E':
			s = "Mon"
			if n >= 4 {
				s = "Monday"
			}
		case 'z':
			s = "MST"
		case 'Z':
			s = "-0700"
			if n == 2 {
				s = "-07:00"
			}
		case 'X':
			s = "Z07:00"
		case 'D':
			s = "002"
		default:
			return "", fmt.Errorf("unsupported letter %q in time pattern %q", c, p)
		}
		b.WriteString(s)
	}
	return b.String(), nil
}
