package schemas

import "strings"

// thingTopicPrefix starts AWS IoT's reserved per-thing topics
// ($aws/things/{thing}/shadow/..., .../jobs/...).
const thingTopicPrefix = "$aws/things/"

// TopicThing returns the thing named by a reserved thing topic
// ($aws/things/{thing}/...), or "" for any other topic.
func TopicThing(topic string) string {
	rest, ok := strings.CutPrefix(topic, thingTopicPrefix)
	if !ok {
		return ""
	}
	thing, _, ok := strings.Cut(rest, "/")
	if !ok {
		return ""
	}
	return thing
}

// EventKey returns the record key of an event in the events topic, for
// every way an event comes in (MQTT, HTTP publish, the HTTP shadow
// API): the thing named by a reserved thing topic (a request on another
// thing's shadow is keyed by that thing, so all requests on one shadow
// share a partition), else the thing the connection is attached to
// (thing, "" when none: one device's events stay in one partition
// whatever its client id), else the client id.
func EventKey(clientID, thing, topic string) string {
	if t := TopicThing(topic); t != "" {
		return t
	}
	if thing != "" {
		return thing
	}
	return clientID
}
