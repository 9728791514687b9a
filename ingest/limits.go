package ingest

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/iotpipe/iotpipe/schemas"
)

// AWS IoT Core's message broker limits, enforced the same way.
const (
	// MaxClientIDBytes bounds an MQTT client id (and HTTP X-Client-Id).
	MaxClientIDBytes = 128
	// MaxTopicBytes bounds a PUBLISH topic, not counting Basic Ingest's
	// $aws/rules/{rule}/ prefix.
	MaxTopicBytes = 256
	// MaxTopicSlashes bounds the forward slashes of a PUBLISH topic, not
	// counting the 3 of Basic Ingest's $aws/rules/{rule}/ prefix.
	MaxTopicSlashes = 7
	// MaxThingNameBytes bounds the thing name of a $aws/things/{thing}/
	// topic.
	MaxThingNameBytes = 128
)

// checkTopic checks the topic of a PUBLISH (or a Will): MQTT's rules
// (non-empty, valid UTF-8 without NUL, no wildcard) and AWS IoT's limits
// (MaxTopicBytes, MaxTopicSlashes, MaxThingNameBytes). The error says
// which rule the topic breaks.
func checkTopic(t string) error {
	switch {
	case t == "":
		return errors.New("empty topic")
	case !utf8.ValidString(t):
		return errors.New("topic is not valid UTF-8")
	case strings.IndexByte(t, 0) >= 0:
		return errors.New("topic contains NUL")
	case strings.ContainsAny(t, "+#"):
		return errors.New("topic contains a wildcard (+ or #)")
	}
	counted := t
	if rest, ok := cutPrefixFold(t, "$aws/rules/"); ok {
		if _, after, ok := strings.Cut(rest, "/"); ok {
			counted = after // Basic Ingest: the rule's prefix does not count
		}
	}
	if len(counted) > MaxTopicBytes {
		return fmt.Errorf("topic of %d bytes over the %d-byte limit", len(counted), MaxTopicBytes)
	}
	if n := strings.Count(counted, "/"); n > MaxTopicSlashes {
		return fmt.Errorf("topic with %d slashes, at most %d", n, MaxTopicSlashes)
	}
	if thing := schemas.TopicThing(t); len(thing) > MaxThingNameBytes {
		return fmt.Errorf("thing name of %d bytes over the %d-byte limit", len(thing), MaxThingNameBytes)
	}
	return nil
}

// checkClientID checks a client id: at most MaxClientIDBytes, no
// wildcard (it becomes a topic level of presence events).
func checkClientID(id string) error {
	switch {
	case len(id) > MaxClientIDBytes:
		return fmt.Errorf("client id of %d bytes over the %d-byte limit", len(id), MaxClientIDBytes)
	case strings.ContainsAny(id, "+#"):
		return errors.New("client id contains a wildcard (+ or #)")
	case strings.IndexByte(id, 0) >= 0:
		return errors.New("client id contains NUL")
	}
	return nil
}

// reservedTopic reports why only iotpipe may publish on topic, or "":
// $SYS topics (as mochi-mqtt matches them), AWS IoT's events
// ($aws/events/..., presence among them) and the shadow service's
// responses
// ($aws/things/{thing}/shadow[/name/{name}]/{get|update|delete}/{accepted|rejected},
// .../update/delta, .../update/documents). Levels other than the thing
// and shadow names match in any case: a forgery must not slip into the
// log as $AWS/Events/...
func reservedTopic(t string) string {
	if len(t) == 0 || t[0] != '$' {
		return ""
	}
	if _, ok := cutPrefixFold(t, "$SYS"); ok {
		return "$SYS topics are the broker's"
	}
	rest, ok := cutPrefixFold(t, "$aws/")
	if !ok {
		return ""
	}
	if _, ok := cutPrefixFold(rest, "events/"); ok || strings.EqualFold(rest, "events") {
		return "$aws/events topics are iotpipe's lifecycle events"
	}
	if rest, ok = cutPrefixFold(rest, "things/"); !ok {
		return ""
	}
	if _, rest, ok = strings.Cut(rest, "/"); !ok { // the thing
		return ""
	}
	if rest, ok = cutPrefixFold(rest, "shadow/"); !ok {
		return ""
	}
	if named, ok := cutPrefixFold(rest, "name/"); ok {
		if _, rest, ok = strings.Cut(named, "/"); !ok {
			return ""
		}
	}
	for _, r := range shadowResponses {
		if strings.EqualFold(rest, r) {
			return "shadow responses are the shadow service's"
		}
	}
	return ""
}

// shadowResponses are the last levels of the shadow service's response
// topics.
var shadowResponses = [...]string{"get/accepted", "get/rejected", "update/accepted", "update/rejected",
	"update/delta", "update/documents", "delete/accepted", "delete/rejected"}

// cutPrefixFold is strings.CutPrefix with prefix matched in any case.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}
