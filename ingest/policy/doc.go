// Package policy evaluates AWS IoT Core policies: the JSON documents that
// say what a device may do (connect, publish, subscribe, receive, read and
// write shadows), with AWS's semantics.
//
// Parse reads a document; Compile binds the policies attached to one
// principal to one connection (its client id, thing, certificate and
// address) and returns the connection's Decider, whose Allow answers from a
// per-action cache on the hot path.
//
// The semantics are AWS's: an explicit Deny wins and no Allow is a deny;
// in resources * matches any run of characters (including /) and ? one
// character, while MQTT's + and # are plain characters; Publish, Receive
// and RetainPublish are checked against topic/..., Subscribe against
// topicfilter/..., Connect against client/..., shadow calls against
// thing/...; a policy variable that cannot be resolved makes its statement
// match nothing. Full ARNs are accepted whatever their region and account.
package policy
